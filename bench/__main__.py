"""`python -m bench` (what `make bench` runs): every section, then latest.json, summary.md and the charts.

    python -m bench                       # everything (20-25 minutes on 2 cores)
    python -m bench --sections ingest     # one section
    python -m bench --quick               # fewer sweep points and events, for trying the harness
    python -m bench --sections compare --before-ref dd27c21   # the pipeline of an older commit against today's

A section that cannot run (a missing part of the product, a stack problem) is recorded as
"not run: <why>"; the others still run and latest.json is always written.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.compare import BEFORE_REF, STORAGE_REF
from bench.env import ROOT, check_stack, machine, settings_record, stack_settings, versions
from bench.ingest import WARM_UP_EVENTS, warm_engine

RESULTS = ROOT / "bench" / "results"
# In this order: `errors` loads the pipeline at half the capacity `ingest` measured.
SECTIONS = ("ingest", "errors", "memory", "compare", "storage", "query", "otlp", "dashboard", "dependencies", "alerts")

log = logging.getLogger("bench")


def _events(args: argparse.Namespace) -> int:
    return int(args.events or (20_000 if args.quick else 150_000))


def _ingest(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import bridge_profile, hotpath, ingest
    from bench.data import sample_messages

    ingest.run(stack, out, events=_events(args), logs_dir=args.logs, quick=args.quick)
    profile_messages = sample_messages(10_000 if args.quick else 20_000, seed=3)
    out["worker_profile"] = _guard(lambda: hotpath.profile_worker(stack, profile_messages, stack.bulk_batch_size,
                                                                  args.out))
    bridge_messages = sample_messages(10_000 if args.quick else 30_000, seed=4)
    out["bridge_profile"] = _guard(lambda: bridge_profile.profile_bridge(stack, bridge_messages,
                                                                         args.logs / "bridge-profile", args.out))


def _errors(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import errors
    from bench.ingest import PipelineConfig

    ingest = results.get("ingest", {})
    config = PipelineConfig(**ingest["best_config"]) if "best_config" in ingest else None
    errors.run(stack, out, quick=args.quick, logs_dir=args.logs, capacity_eps=ingest.get("pipeline_eps"),
               live_eps=(ingest.get("pipeline_live") or {}).get("eps"), config=config)


def _memory(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import memory

    memory.run(stack, out, quick=args.quick, logs_dir=args.logs)


def _compare(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import compare

    if args.before_ref.lower() in ("", "none"):
        out["not_run"] = "--before-ref none"
        return
    compare.run(stack, out, ref=args.before_ref, events=_events(args), logs_dir=args.logs / "compare")


def _storage(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import compare
    from bench.data import sample_messages

    out.update(compare.storage_before_after(stack, sample_messages(_events(args), seed=6), args.storage_ref,
                                            repeats=1 if args.quick else 5))


def _query(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import query

    query.run(stack, out, quick=args.quick, logs_dir=args.logs)


def _otlp(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import otlp

    otlp.run(stack, out, quick=args.quick, logs_dir=args.logs)


def _dashboard(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import dashboard

    dashboard.run(stack, out, quick=args.quick, logs_dir=args.logs)


def _dependencies(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import dependencies

    dependencies.run(stack, out, quick=args.quick, logs_dir=args.logs)


def _alerts(stack, out: dict, args: argparse.Namespace, results: dict) -> None:
    from bench import alerts

    alerts.run(stack, out, quick=args.quick, logs_dir=args.logs)


RUNNERS: dict[str, Callable[..., None]] = {"ingest": _ingest, "errors": _errors, "memory": _memory,
                                           "compare": _compare, "storage": _storage, "query": _query, "otlp": _otlp,
                                           "dashboard": _dashboard, "dependencies": _dependencies,
                                           "alerts": _alerts}


def _guard(work: Callable[[], dict]) -> dict:
    try:
        return work()
    except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
        log.exception("sub-measurement failed")
        return {"not_run": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma separated: " + ",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="fewer sweep points and events")
    parser.add_argument("--events", type=int, default=0, help="events per ingest run (default 150000)")
    parser.add_argument("--before-ref", default=BEFORE_REF,
                        help=f"git ref whose pipeline (bridge, worker, index templates) runs before the working tree's "
                             f"in section compare (default {BEFORE_REF}); 'none' skips it")
    parser.add_argument("--storage-ref", default=STORAGE_REF,
                        help="git ref whose index templates section storage runs against today's, alternating "
                             f"(default {STORAGE_REF})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and the charts go")
    args = parser.parse_args(argv)
    args.logs = Path("/tmp") / f"panopticon-bench-{int(time.time())}"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("opensearch", "elastic_transport", "urllib3", "panopticon.storage", "panopticon.kafka"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    stack = stack_settings()
    problems = check_stack(stack)
    if problems:
        print("bench: the stack is not usable: " + "; ".join(problems), file=sys.stderr)
        return 2
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")

    started = time.time()
    results: dict[str, Any] = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "make bench  # = " + shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
        "machine": machine(), "versions": versions(stack), "settings": settings_record(stack),
        "note": "The machine is shared: compare ratios measured side by side in this run, not absolute numbers "
                "across runs.",
    }
    log.info("engine warm-up")
    warm_engine(stack)
    results["warm_up"] = f"one uncounted direct-bulk run of {WARM_UP_EVENTS:,} events before the sections"
    for section in SECTIONS:
        out: dict[str, Any] = {}
        results[section] = out
        if section not in chosen:
            out["not_run"] = "not selected (--sections)"
            continue
        section_started = time.time()
        log.info("section %s", section)
        try:
            RUNNERS[section](stack, out, args, results)
        except Exception as exc:  # noqa: BLE001 - one section failing must not lose the others
            log.error("section %s failed:\n%s", section, traceback.format_exc())
            out["not_run"] = f"{type(exc).__name__}: {exc}"
        out["seconds"] = round(time.time() - section_started, 1)
    results["seconds"] = round(time.time() - started, 1)
    report.write(results, args.out)
    log.info("wrote %s (%.0f s)", args.out / "latest.json", results["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

