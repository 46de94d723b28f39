"""Before/after: the pipeline of an older commit and of the working tree, side by side on the same messages.

The older commit is exported with `git archive` into /tmp (the repository's worktrees are left alone) and
its bridge and worker run with that directory as their working directory and first on PYTHONPATH, in the
same virtualenv; its index templates and data streams are installed by its own `panopticon.storage`
(`open_store(..., setup=True)` run inside it), so a mapping change shows in the engine's CPU. Then the
working tree runs the same messages with the same settings. Each run is timed and metered exactly as the
ingest section's backlog runs (bridge + worker = our own CPU; engine CPU from the engine's process).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.data import Msg
from bench.env import ROOT
from bench.ingest import PipelineConfig, pipeline_run
from bench.procs import checkout_env
from bench.stats import percentile
from panopticon.settings import Settings, to_environ

log = logging.getLogger("bench.compare")

BEFORE_REF = "dd27c21"  # branch integ before the speed work of issue 19
KEPT = ("eps", "eps_first_to_all", "overall_eps", "all_searchable_s", "stored_exactly", "cpu_s_per_1000",
        "own_cpu_s_per_1000", "machine_busy", "peak_rss_mb")

# Run inside the checkout: prove which `panopticon` it imports, then install its templates and data streams.
_SETUP = (
    "import sys, panopticon\n"
    "from pathlib import Path\n"
    "root = Path(sys.argv[1]).resolve()\n"
    "where = Path(panopticon.__file__).resolve()\n"
    "if root not in where.parents:\n"
    "    sys.exit(f'imported panopticon from {where}, not from {root}')\n"
    "from panopticon.settings import load_or_exit\n"
    "from panopticon.storage import open_store\n"
    "open_store(load_or_exit(), setup=True).close()\n"
    "print(where)\n"
)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def export(ref: str) -> tuple[Path, str]:
    """The tracked tree of `ref` in a fresh directory under /tmp, and the commit's full hash."""
    sha = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    target = Path(tempfile.mkdtemp(prefix=f"panopticon-bench-before-{sha[:12]}-"))
    archive = target / "tree.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "archive", "--format=tar", sha], cwd=ROOT, stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    _build_extensions(target)
    return target, sha


def _build_extensions(checkout: Path) -> None:
    """Compile the checkout's Cython modules in place, as `pip install -e .` does for the working tree: its
    processes import the checkout's own code (PYTHONPATH), which is not installed."""
    sources = sorted(str(path) for path in (checkout / "panopticon").rglob("*.pyx"))
    if not sources:
        return
    done = subprocess.run([sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q", *sources], cwd=checkout,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling {', '.join(sources)} failed:\n{done.stdout}\n{done.stderr}")


def setup_from(checkout: Path) -> Callable[[Settings], None]:
    """Installs a namespace's templates and data streams with the checkout's own code."""

    def setup(settings: Settings) -> None:
        env = {**os.environ, **to_environ(settings), **checkout_env(checkout)}
        done = subprocess.run([sys.executable, "-c", _SETUP, str(checkout)], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"templates of {checkout} not installed:\n{done.stdout}\n{done.stderr}")

    return setup


def changes_since(sha: str) -> list[str]:
    """One line per commit between `sha` and HEAD that touched the product (panopticon/, celeryconfig.py)."""
    out = _git("log", "--format=%h %s", f"{sha}..HEAD", "--", "panopticon", "celeryconfig.py")
    return out.splitlines()


def before_after(stack: Settings, messages: Sequence[Msg], ref: str, logs_dir: Path,
                 config: PipelineConfig | None = None, *, repeats: int = 3) -> dict[str, Any]:
    """The pipeline of `ref` and the working tree's, in turn `repeats` times (backlog, same messages and
    settings); each side's figures are the medians of its runs.

    Why in turn: one pair was not enough on this machine. Two back-to-back runs of the same code differed
    by 20 %, more than most changes measured here; a drift of the machine now falls on both sides alike.
    """
    config = config or PipelineConfig(stack.bulk_batch_size, stack.bulk_max_parallel_flushes, 2)
    checkout, sha = export(ref)
    befores, afters = [], []
    try:
        for _ in range(repeats):
            befores.append(pipeline_run(stack, messages, config, mode="backlog", logs_dir=logs_dir / "before",
                                        cwd=checkout, setup=setup_from(checkout)))
            afters.append(pipeline_run(stack, messages, config, mode="backlog", logs_dir=logs_dir / "after"))
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
    before, after = median_run(befores), median_run(afters)
    result: dict[str, Any] = {
        "before_ref": ref, "before_commit": sha[:12], "after_commit": _git("rev-parse", "--short=12", "HEAD"),
        "after_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")),
        "changes": changes_since(sha), "events": len(messages), "config": config.__dict__, "repeats": repeats,
        "before": before, "after": after, "ratios": ratios(before, after),
    }
    log.info("before/after %s: %s -> %s eps, own CPU/1000 %s -> %s, engine CPU/1000 %s -> %s (medians of %d)", ref,
             before["eps"], after["eps"], before["own_cpu_s_per_1000"], after["own_cpu_s_per_1000"],
             before["cpu_s_per_1000"].get("engine"), after["cpu_s_per_1000"].get("engine"), repeats)
    return result


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One side's figures: the median of each over its runs (CPU per process too), and every run's own."""
    processes = sorted({name for run in runs for name in run["cpu_s_per_1000"]})
    return {
        "eps": _median([run["eps"] for run in runs]),
        "own_cpu_s_per_1000": _median([run["own_cpu_s_per_1000"] for run in runs]),
        "cpu_s_per_1000": {name: _median([run["cpu_s_per_1000"].get(name) for run in runs]) for name in processes},
        "stored_exactly": all(run["stored_exactly"] for run in runs),
        "runs": [{k: run.get(k) for k in KEPT} for run in runs],
    }


def _median(values: Sequence[float | None]) -> float | None:
    return percentile([v for v in values if v is not None], 50)


def ratios(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """after / before for throughput and for CPU per event (own, engine): below 1 for CPU is better."""
    return {"eps": _ratio(after["eps"], before["eps"]),
            "own_cpu_s_per_1000": _ratio(after["own_cpu_s_per_1000"], before["own_cpu_s_per_1000"]),
            "engine_cpu_s_per_1000": _ratio(after["cpu_s_per_1000"].get("engine"),
                                            before["cpu_s_per_1000"].get("engine"))}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def run(stack: Settings, out: dict[str, Any], *, ref: str, events: int, logs_dir: Path) -> None:
    """Fill `out` (the "compare" section of latest.json)."""
    from bench.data import sample_messages

    out.update(before_after(stack, sample_messages(events, seed=5), ref, logs_dir))


STORAGE_REF = "15ffb93"  # main before the spans' and logs' indices kept less (docs/storage.md) and refreshed at 500 ms
STORAGE_BULK = (5000, 2)  # bulk size, client processes: near the ceiling sweep's best on this machine


def storage_before_after(stack: Settings, messages: Sequence[Msg], ref: str, *, repeats: int = 5) -> dict[str, Any]:
    """Engine CPU per 1,000 events for the index templates of `ref` (installed by its own code; refresh 1 s),
    today's templates at `ref`'s refresh interval (the mapping alone), and today's as configured (mapping and
    refresh). The worker's very documents are bulk-written straight to the engine (as for the ceiling: no
    pipeline processes competing for the cores, so the engine's own CPU is what is compared), the three in
    turn `repeats` times, so that a drift of the machine falls on all three alike; medians are compared."""
    from bench.data import documents
    from bench.ingest import ceiling_run

    docs = documents(stack, messages)
    size, processes = STORAGE_BULK
    variants: dict[str, list[dict[str, Any]]] = {"before": [], "mapping": [], "today": []}
    checkout, sha = export(ref)
    try:
        for _ in range(repeats):
            for name in variants:
                settings = stack.replace(search_refresh_interval_ms=1000) if name == "mapping" else stack
                result = ceiling_run(settings, docs, size, processes=processes, stage=f"storage {name}",
                                     setup=setup_from(checkout) if name == "before" else None)
                variants[name].append({"eps": result["eps"],
                                       "engine_cpu_s_per_1000": result["cpu_s_per_1000"].get("engine")})
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
    medians = {name: {key: _median([r[key] for r in runs]) for key in ("eps", "engine_cpu_s_per_1000")}
               for name, runs in variants.items()}
    out = {"before_ref": ref, "before_commit": sha[:12], "events": sum(len(d) for d in docs.values()),
           "bulk": {"size": size, "processes": processes}, "repeats": repeats,
           "refresh_ms_today": stack.search_refresh_interval_ms, "runs": variants, "medians": medians,
           "engine_cpu_ratio": {name: _ratio(medians[name]["engine_cpu_s_per_1000"],
                                             medians["before"]["engine_cpu_s_per_1000"])
                                for name in ("mapping", "today")}}
    log.info("storage before/after %s: engine CPU/1000 %s", ref,
             {name: m["engine_cpu_s_per_1000"] for name, m in medians.items()})
    return out

