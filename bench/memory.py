"""The bridge's memory against the bound its settings give, with 1 MB messages.

The bridge and worker run as in production; once the bridge has its partitions its resident memory is
read for a second (the baseline), then messages of MESSAGE_BYTES (a 32,000-character `message` and a
large free-form attribute, under MAX_MESSAGE_BYTES so none is dead-lettered) are produced as fast as the
client allows, far faster than the worker and engine can store them, so the bridge runs at its limits:
every batch in flight, the next ones waiting, partitions paused. Its RSS is sampled every 0.2 s and its
high-water mark (VmHWM, the kernel's exact peak, transients included) read before it is stopped.

The bound (`bridge_bound`) is what the bridge's code holds at most, term by term:

    RSS <= baseline
           + librdkafka's fetch queue            Q + F   (queued.max.messages.kbytes, overshot by one fetch of
                                                          at most fetch.max.bytes)
           + one consume() moved into Python     Q + F   (it cannot return more than was queued)
           + batches in flight                   P x B   (BULK_MAX_PARALLEL_FLUSHES)
           + batches waiting                 (P - 1) x B (the bridge pauses its partitions when P wait; what
                                                          the pausing step consumed is the term above)
           + open batches                        sum of B_s over the streams consumed
           + one hand-off's copies               H x B   (msgpack body, base64 bytes and str, the JSON envelope
                                                          and its bytes for Redis: H = 5)
           + Python objects per message held     n x 256 bytes

where B = max over streams of max(batch byte limit, largest message). Memory the allocator keeps after a
free is not in it: if the peak is above the bound, that is what the summary says, and which term is largest.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.env import namespace
from bench.ingest import _died, _start_pipeline, watch_count
from bench.procs import CpuMeter, Launcher, Proc
from panopticon.flow import streams_by_topic
from panopticon.kafka import consumer_config, producer_config
from panopticon.settings import Settings

log = logging.getLogger("bench.memory")

MESSAGE_BYTES = 1_000_000
FULL_MESSAGES = 1000  # 1 GB: the bridge is at its limits within seconds; more only adds time
QUICK_MESSAGES = 300
MESSAGE_CHARS = 32_000  # the `message` field (the schema takes at most 32,768 characters)
HANDOFF_COPIES = 5
OBJECT_BYTES = 256
# librdkafka's own defaults, used when consumer_config leaves a key unset.
RDKAFKA_QUEUE_KBYTES = 65_536
RDKAFKA_FETCH_MAX_BYTES = 52_428_800
THROUGHPUT_LINE = re.compile(r"(\d+) in flight, (\d+) ready")


def bridge_bound(settings: Settings, baseline: int, message_bytes: int) -> dict[str, Any]:
    """The bound in bytes, each term with its value and where it comes from (see the module docstring)."""
    consumer = consumer_config(settings)
    queue = int(consumer.get("queued.max.messages.kbytes", RDKAFKA_QUEUE_KBYTES)) * 1024
    fetch = int(consumer.get("fetch.max.bytes", RDKAFKA_FETCH_MAX_BYTES))
    streams = list(streams_by_topic(settings).values())
    largest = max(settings.max_message_bytes, message_bytes)
    batch = max(max(s.batch_bytes(settings), largest) for s in streams)
    parallel = settings.bulk_max_parallel_flushes
    open_batches = sum(max(s.batch_bytes(settings), largest) for s in streams)
    held = 2 * (queue + fetch) + (2 * parallel - 1) * batch + open_batches
    terms = {
        "baseline (measured)": baseline,
        "librdkafka fetch queue: queued.max.messages.kbytes + fetch.max.bytes": queue + fetch,
        "one consume() into Python: the same": queue + fetch,
        f"in flight: BULK_MAX_PARALLEL_FLUSHES {parallel} x B": parallel * batch,
        f"waiting before the pause: ({parallel} - 1) x B": (parallel - 1) * batch,
        f"open batches: one per stream ({len(streams)})": open_batches,
        f"one hand-off's copies: {HANDOFF_COPIES} x B": HANDOFF_COPIES * batch,
        f"Python objects: {OBJECT_BYTES} B per message held": held // max(1, message_bytes) * OBJECT_BYTES,
    }
    mib = {name: round(value / 2**20, 1) for name, value in terms.items()}
    formula = (f"baseline + 2 x (Q {queue / 2**20:g} MiB + F {fetch / 2**20:g} MiB) + (2 x P {parallel} - 1 + "
               f"H {HANDOFF_COPIES}) x B {batch / 2**20:g} MiB + sum(B_s) {open_batches / 2**20:g} MiB + "
               f"objects")
    return {"bytes": sum(terms.values()), "mib": round(sum(terms.values()) / 2**20, 1), "terms_mib": mib,
            "formula": formula, "B_bytes": batch, "largest_term": max((k for k in mib if "baseline" not in k),
                                                                      key=lambda k: mib[k])}


def _payload_base(chars: int, seed: int = 17) -> str:
    """Text of words from a small vocabulary (compressible, as logs are): the big attribute's base."""
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 10))) for _ in range(2000)]
    text = " ".join(rng.choices(words, k=chars // 5))
    return (text * (chars // max(1, len(text)) + 1))[:chars]


def big_messages(run: str, count: int, size: int = MESSAGE_BYTES):
    """`count` log messages of `size` bytes (each a different rotation of one text, so none is a copy)."""
    import orjson

    now_ms = int(time.time() * 1000)
    head = {"timestamp": now_ms, "service_name": "memory-probe", "environment": "bench", "level": "INFO",
            "message": ("big message " * (MESSAGE_CHARS // 12 + 1))[:MESSAGE_CHARS]}
    room = size - len(orjson.dumps({**head, "event_id": f"{run}-{count}", "attributes": {"payload": ""}}))
    base = _payload_base(room)
    for n in range(count):
        turn = (n * 7919) % len(base)
        value = orjson.dumps({**head, "event_id": f"{run}-{n}", "attributes": {"payload": base[turn:] + base[:turn]}})
        yield value


def _produce_big(settings: Settings, run: str, count: int, size: int, failures: list[str]) -> None:
    producer = Producer(producer_config(settings))

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    for value in big_messages(run, count, size):
        while True:
            try:
                producer.produce(settings.kafka_apm_log_topic, value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(300):
        failures.append("not every big message was acknowledged by Kafka")


def high_water_mark(pid: int) -> int | None:
    """VmHWM (peak RSS over the process's life, from the kernel) in bytes; None where /proc has no such line."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _rss(pid: int) -> int:
    import psutil

    with contextlib.suppress(psutil.Error):
        return int(psutil.Process(pid).memory_info().rss)
    return 0


def _batches_seen(bridge: Proc) -> dict[str, int | None]:
    """The most batches in flight and waiting that the bridge's throughput lines reported."""
    found = [(int(a), int(b)) for a, b in THROUGHPUT_LINE.findall(bridge.log_text())]
    return {"max_in_flight": max((a for a, _ in found), default=None),
            "max_ready": max((b for _, b in found), default=None), "lines": len(found)}


def run(stack: Settings, out: dict[str, Any], *, quick: bool, logs_dir: Path) -> None:
    """Fill `out` (the "memory" section of latest.json)."""
    count = QUICK_MESSAGES if quick else FULL_MESSAGES
    launcher = Launcher(logs_dir)
    # Throughput lines every second: they say how many batches were in flight and waiting.
    with namespace(stack, "mem", stream_throughput_interval_seconds=1) as (settings, store):
        try:
            procs = _start_pipeline(launcher, settings, 2)
            launcher.wait_for_log(procs["bridge"], "assigned", timeout=60)
            bridge_pid = procs["bridge"].popen.pid
            baseline = 0
            for _ in range(10):
                baseline = max(baseline, _rss(bridge_pid))
                time.sleep(0.1)
            meter = CpuMeter.for_pipeline(procs, series=("bridge",))
            meter.start()
            started = time.monotonic()
            failures: list[str] = []
            producer = threading.Thread(target=_produce_big, daemon=True,
                                        args=(settings, settings.index_prefix.rstrip("-"), count, MESSAGE_BYTES,
                                              failures))
            producer.start()
            watch_count(store, count, timeout=900, stop=lambda: failures[0] if failures else _died(procs)())
            meter.stop()
            hwm = high_water_mark(bridge_pid)
            seen = _batches_seen(procs["bridge"])
            produced_s = time.monotonic() - started
        finally:
            launcher.stop_all()
    bound = bridge_bound(settings, baseline, MESSAGE_BYTES)
    sampled = meter.rss_peak.get("bridge", (0, 0))[0]
    peak = max(hwm or 0, sampled)
    out.update({
        "messages": count, "message_bytes": MESSAGE_BYTES, "gb_total": round(count * MESSAGE_BYTES / 1e9, 2),
        "seconds": round(produced_s, 1), "mb_per_s": round(count * MESSAGE_BYTES / 1e6 / produced_s, 1),
        "settings": {"BULK_BATCH_BYTES_MB": settings.bulk_batch_bytes_mb,
                     "BULK_MAX_PARALLEL_FLUSHES": settings.bulk_max_parallel_flushes,
                     "BULK_BATCH_SIZE": settings.bulk_batch_size, "MAX_MESSAGE_BYTES": settings.max_message_bytes,
                     "OTLP_BATCH_BYTES_MB": settings.otlp_batch_bytes_mb},
        "baseline_mib": round(baseline / 2**20, 1), "bound": bound,
        "peak_sampled_mib": round(sampled / 2**20, 1), "peak_hwm_mib": round(hwm / 2**20, 1) if hwm else None,
        "peak_mib": round(peak / 2**20, 1), "holds": peak <= bound["bytes"],
        "headroom_mib": round((bound["bytes"] - peak) / 2**20, 1),
        "batches_seen": seen, "peak_rss_mb": meter.peak_rss_mb(),
        "rss_series_mib": [(at, round(size / 2**20, 1)) for at, size in meter.series.get("bridge", [])],
    })
    log.info("bridge memory with %d messages of %d bytes: peak %s MiB (hwm %s), bound %s MiB: %s", count,
             MESSAGE_BYTES, out["peak_mib"], out["peak_hwm_mib"], bound["mib"], "holds" if out["holds"] else
             "DOES NOT HOLD")
