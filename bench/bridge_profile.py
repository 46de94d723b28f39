"""Where the bridge's time goes: the real bridge process under cProfile, on a backlog, with a real worker.

The bridge's module runs under cProfile timed by the main thread's CPU clock (`time.thread_time`): the consume
loop's CPU, not its waits (a blocking consume() or a socket read cost no CPU), and not librdkafka's own
threads. It is stopped with SIGTERM once every document is searchable, which it answers by draining and
exiting, and the profile is written then. Self time is grouped into the bridge's stages; the 40 functions
with the most self time go to profile_bridge.txt. A function of no stage (a builtin such as dict.get, a
dataclass's __init__) counts for the stages of the functions that called it, in proportion. The modules
are imported before profiling starts; what start-up remains (settings, the Celery app, the consumer) is in.
Profiling slows Python down, so this run's rate is not a figure; the shares are.
"""

from __future__ import annotations

import pstats
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data import Msg
from bench.env import ROOT
from bench.ingest import PipelineConfig, pipeline_run
from panopticon.settings import Settings

_PROFILED = (
    "import cProfile, runpy, sys, time\n"
    "out = sys.argv[1]\n"
    "sys.argv = [sys.argv[0]]\n"
    "import panopticon.ingest.bridge, panopticon.logs, panopticon.settings, panopticon.worker  # imports: start-up\n"
    "profile = cProfile.Profile(time.thread_time)\n"
    "profile.enable()\n"
    "try:\n"
    "    runpy.run_module('panopticon.ingest', run_name='__main__', alter_sys=True)\n"
    "except SystemExit:\n"
    "    pass\n"
    "finally:\n"
    "    profile.disable()\n"
    "    profile.dump_stats(out)\n"
)
# (stage, needles in "file:function") in the order they are tried: the first match wins. C functions show as
# "~:<method 'consume' of 'cimpl.Consumer' objects>" or "~:<built-in method binascii.b2a_base64>".
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("Kafka consume (confluent_kafka)", ("'consume' of 'cimpl.Consumer'", "'poll' of 'cimpl.Consumer'",
                                         "cimpl.Message' objects")),
    ("Kafka commit, pause, positions", ("of 'cimpl.Consumer'",)),
    ("batcher", ("ingest/batcher.py",)),
    ("hand-off encoding (msgpack, base64, JSON)", ("msgpack", "base64", "binascii", "json/", "_json",
                                                   "kombu/serialization", "kombu/utils/json")),
    ("hand-off (Celery send_task, kombu)", ("celery/app/", "celery/utils/", "kombu/messaging", "kombu/connection",
                                           "kombu/transport/", "kombu/entity", "amqp/")),
    ("result polling (AsyncResult, result backend)", ("celery/result.py", "celery/backends/")),
    ("Redis client and sockets", ("redis/", "socket", "select", "poll")),
    ("offsets and commit bookkeeping", ("ingest/offsets.py", "ingest/poison.py")),
    ("telemetry (Prometheus)", ("prometheus_client/", "panopticon/telemetry.py")),
    ("bridge loop", ("ingest/bridge.py",)),
]


def _stage(key: str) -> str | None:
    for stage, needles in STAGES:
        if any(needle in key for needle in needles):
            return stage
    return None


def _key(entry: tuple[str, int, str]) -> str:
    filename, _line, function = entry
    return f"{filename.replace(str(ROOT) + '/', '')}:{function}"


def stage_times(stats: dict[Any, Any]) -> dict[str, float]:
    """Self seconds by stage; a function of no stage is split over its callers' stages (two levels up)."""
    out: dict[str, float] = {}

    def add(stage: str, seconds: float) -> None:
        out[stage] = out.get(stage, 0.0) + seconds

    def attribute(entry: Any, seconds: float, depth: int) -> None:
        stage = _stage(_key(entry))
        if stage is not None:
            add(stage, seconds)
            return
        callers = stats.get(entry, (0, 0, 0.0, 0.0, {}))[4]
        weights = {caller: values[2] for caller, values in callers.items() if values[2] > 0}
        if depth == 0 or not weights:
            add("other Python", seconds)
            return
        total = sum(weights.values())
        for caller, weight in weights.items():
            attribute(caller, seconds * weight / total, depth - 1)

    for entry, (_cc, _nc, self_time, _cum, _callers) in stats.items():
        attribute(entry, self_time, 2)
    return out


def profile_bridge(stack: Settings, messages: Sequence[Msg], logs_dir: Path, out_dir: Path,
                   config: PipelineConfig | None = None) -> dict[str, Any]:
    """One backlog run with the bridge under cProfile: share of the bridge's main-thread CPU by stage."""
    config = config or PipelineConfig(stack.bulk_batch_size, stack.bulk_max_parallel_flushes, 2)
    logs_dir.mkdir(parents=True, exist_ok=True)
    profile = logs_dir / "bridge.prof"
    argv = [sys.executable, "-c", _PROFILED, str(profile)]
    run = pipeline_run(stack, messages, config, mode="backlog", logs_dir=logs_dir, bridge_argv=argv)
    if not profile.exists():
        raise RuntimeError(f"the bridge wrote no profile at {profile} (did it exit on SIGTERM?)")
    stages = stage_times(pstats.Stats(str(profile)).stats)  # type: ignore[attr-defined]
    total = sum(stages.values()) or 1.0
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / "profile_bridge.txt"
    with text_path.open("w") as handle:
        pstats.Stats(str(profile), stream=handle).sort_stats("tottime").print_stats(40)
    return {
        "events": len(messages), "config": config.__dict__, "profiled_main_thread_cpu_s": round(total, 2),
        "bridge_cpu_s_per_1000_profiled": run["cpu_s_per_1000"].get("bridge"),
        "share_by_stage": {k: round(v / total, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
        "top_functions": text_path.name,
    }
