"""Where the pipeline's time goes: the worker's `index_batch` profiled in-process.

The worker profile runs real batches against the real engine (cProfile, one process), and groups the
time into the stages the issue names: JSON decoding, validation, document building, bulk body
encoding, the engine's answer, and the outbox. (The before/after of the whole pipeline is `compare.py`.)
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data import Msg
from bench.env import ROOT, namespace
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
    batches = batches_of(stack, messages, batch_size)
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


def batches_of(settings: Settings, messages: Sequence[Msg], size: int) -> list[tuple[str, str, list]]:
    """The spans, then the logs, of `messages` in batches of `size` records, as index_batch takes them."""
    out = []
    for kind, stream, topic in (("span", "spans", settings.kafka_apm_span_topic),
                                ("log", "logs", settings.kafka_apm_log_topic)):
        values = [m.value for m in messages if m.kind == kind]
        for start in range(0, len(values), size):
            out.append((stream, topic, [(0, start + i, v) for i, v in enumerate(values[start:start + size])]))
    return out
