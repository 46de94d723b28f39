"""Where the pipeline's time goes: the worker's `index_batch` profiled in-process, and the bridge before/after.

The worker profile runs real batches against the real engine (cProfile, one process), and groups the
time into the stages the issue names: JSON decoding, validation, document building, bulk body
encoding, the engine's answer, and the outbox. The before/after runs the pipeline twice, side by
side, with the bridge of an older commit (loaded from git into the bridge process) and with the
working tree's.
"""

from __future__ import annotations

import cProfile
import pstats
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data import Msg
from bench.env import ROOT, namespace
from bench.ingest import PipelineConfig, pipeline_run
from panopticon.processing.outbox import Outbox
from panopticon.processing.tasks import index_batch
from panopticon.settings import Settings

# (stage, predicate on "file:function") in the order they are tried: the first match wins.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("json decode (orjson.loads)", ("orjson.loads",)),
    ("validation (marshmallow schemas)", ("marshmallow/", "processing/schemas.py")),
    ("document building", ("processing/documents.py", "model/histogram.py", "model/times.py")),
    ("bulk body encoding", ("orjson.dumps", "storage/store.py:bulk")),
    ("engine round trip (waiting)", ("recv_into", "sendall", "socket")),
    ("HTTP client", ("urllib3/", "opensearchpy/", "http/client.py", "elastic_transport/", "json/")),
    ("outbox (Kafka producer)", ("processing/outbox.py", "cimpl.Producer")),
]


def _stage(key: str) -> str:
    for stage, needles in STAGES:
        if any(needle in key for needle in needles):
            return stage
    return "other Python"


def profile_worker(stack: Settings, messages: Sequence[Msg], batch_size: int, out_dir: Path) -> dict[str, Any]:
    """Run `index_batch` on real batches under cProfile; time per stage (self time) and events/s."""
    batches = _batches(stack, messages, batch_size)
    with namespace(stack, "prof") as (settings, store):
        outbox = Outbox(settings)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for stream, topic, records in batches:
            index_batch(store, outbox, stream, topic, records, max_retries=2, max_message_bytes=1 << 20)
        profiler.disable()
        elapsed = time.perf_counter() - started
        # The same batches again without the profiler: the events/s of one worker process.
        with namespace(stack, "prof2") as (settings2, store2):
            outbox2 = Outbox(settings2)
            started = time.perf_counter()
            for stream, topic, records in batches:
                index_batch(store2, outbox2, stream, topic, records, max_retries=2, max_message_bytes=1 << 20)
            plain = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    stages: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, self_time, _cum, _callers) in stats.stats.items():
        key = f"{filename.replace(str(ROOT) + '/', '')}:{function}"
        stages[_stage(key)] = stages.get(_stage(key), 0.0) + self_time
    total = sum(stages.values()) or 1.0
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / "profile_worker.txt"
    with text_path.open("w") as handle:
        pstats.Stats(profiler, stream=handle).sort_stats("tottime").print_stats(40)
    return {
        "events": len(messages), "batch_size": batch_size,
        "one_process_eps": round(len(messages) / plain), "profiled_seconds": round(elapsed, 2),
        "share_by_stage": {k: round(v / total, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
        "top_functions": text_path.name,
    }


def _batches(settings: Settings, messages: Sequence[Msg], size: int) -> list[tuple[str, str, list]]:
    out = []
    for kind, stream, topic in (("span", "spans", settings.kafka_apm_span_topic),
                                ("log", "logs", settings.kafka_apm_log_topic)):
        values = [m.value for m in messages if m.kind == kind]
        for start in range(0, len(values), size):
            out.append((stream, topic, [(0, start + i, v) for i, v in enumerate(values[start:start + size])]))
    return out


# --- before / after -----------------------------------------------------------------------------------
_OLD_BRIDGE = (
    "import importlib.util, runpy, sys\n"
    "spec = importlib.util.spec_from_file_location('panopticon.ingest.bridge', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules['panopticon.ingest.bridge'] = module\n"
    "spec.loader.exec_module(module)\n"
    "runpy.run_module('panopticon.ingest', run_name='__main__')\n"
)


def old_bridge_argv(ref: str, work: Path) -> list[str]:
    """A bridge process running `panopticon/ingest/bridge.py` as it was at git `ref` (the rest as now)."""
    source = subprocess.run(["git", "show", f"{ref}:panopticon/ingest/bridge.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"bridge_{ref}.py"
    path.write_text(source)
    return [sys.executable, "-c", _OLD_BRIDGE, str(path)]


def before_after(stack: Settings, messages: Sequence[Msg], ref: str, logs_dir: Path) -> dict[str, Any]:
    """The pipeline with the bridge of `ref`, then with today's, back to back.

    Default settings except the throughput line every 2 s (as the integration tests run the bridge),
    so that a run of a few seconds reports, and so calls `lag()`, the way a long run at 10 s does.
    """
    stack = stack.replace(stream_throughput_interval_seconds=2)
    config = PipelineConfig(stack.bulk_batch_size, stack.bulk_max_parallel_flushes, 2)
    before = pipeline_run(stack, messages, config, mode="backlog", logs_dir=logs_dir,
                          bridge_argv=old_bridge_argv(ref, logs_dir))
    after = pipeline_run(stack, messages, config, mode="backlog", logs_dir=logs_dir)
    return {
        "what": "bridge: lag() read high watermarks from the broker (one blocking round trip per partition "
                "in the consume loop) -> cached watermarks; Prometheus counters per step, not per message",
        "before_ref": ref, "events": len(messages), "stream_throughput_interval_seconds": 2,
        "before": {k: before[k] for k in ("eps", "overall_eps", "all_searchable_s", "cpu_s_per_1000")},
        "after": {k: after[k] for k in ("eps", "overall_eps", "all_searchable_s", "cpu_s_per_1000")},
        "ratio": round(after["eps"] / before["eps"], 2) if before["eps"] and after["eps"] else None,
        "overall_ratio": round(after["overall_eps"] / before["overall_eps"], 2),
    }
