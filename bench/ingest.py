"""Ingest: the pipeline (Kafka -> bridge -> Celery -> engine) against the ceiling (one process writing bulks).

The ceiling is the very documents the worker would write (decoded by the project's schemas from the
same messages, orjson-encoded), sent with `SearchStore.create_many` from this one Python process,
with the best bulk size and parallelism found. Both are timed the same way: by polling `_count`
(no forced refresh) until every document is searchable; the rate runs from the first refresh that shows
documents to the one that shows them all, which leaves out process start-up.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.data import Msg, documents, probe_log, probe_span, produce_all, sample_messages, topic_of
from bench.env import namespace, settings_record
from bench.procs import CpuMeter, Launcher
from bench.stats import steady_rate, summary_ms
from panopticon.kafka import producer_config
from panopticon.settings import Settings
from panopticon.storage import LOGS, TRACES, SearchStore

log = logging.getLogger("bench.ingest")

POLL_S = 0.1


@dataclass(frozen=True)
class PipelineConfig:
    batch_size: int
    parallel: int
    concurrency: int

    def label(self) -> str:
        return f"batch={self.batch_size} in_flight={self.parallel} worker_concurrency={self.concurrency}"


# --- counting what is searchable ----------------------------------------------------------------------
def _both(store: SearchStore) -> str:
    return f"{store.name(TRACES)},{store.name(LOGS)}"


def watch_count(store: SearchStore, total: int, *, timeout: float,
                stop: Callable[[], str | None] | None = None) -> list[tuple[float, int]]:
    """(monotonic time, searchable count) every POLL_S until `total` are searchable."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    index = _both(store)
    while time.monotonic() < deadline:
        count = store.count(index)
        samples.append((time.monotonic(), count))
        if count >= total:
            return samples
        if stop and (why := stop()):
            raise RuntimeError(why)
        time.sleep(POLL_S)
    raise RuntimeError(f"only {samples[-1][1] if samples else 0} of {total} documents searchable after {timeout}s")


def _timing(samples: list[tuple[float, int]], total: int, started: float) -> dict[str, Any]:
    rate = steady_rate(samples, total)
    end = samples[-1][0]
    return {"events": total, "eps": round(rate) if rate else None,
            "all_searchable_s": round(end - started, 2), "overall_eps": round(total / (end - started))}


# --- the ceiling --------------------------------------------------------------------------------------
def _bulks(docs: dict[str, list[tuple[str, bytes]]], size: int) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """Bulks of `size` documents, the two streams interleaved as the pipeline's batches are."""
    per_stream = [[(stream, items[i:i + size]) for i in range(0, len(items), size)] for stream, items in docs.items()]
    return [b for pair in itertools.zip_longest(*per_stream) for b in pair if b is not None]


def ceiling_run(stack: Settings, docs: dict[str, list[tuple[str, bytes]]], bulk_size: int, threads: int) -> dict:
    total = sum(len(items) for items in docs.values())
    bulks = _bulks(docs, bulk_size)
    with namespace(stack, "ceil", topics=False) as (_settings, store):
        failures: list[str] = []

        def write(bulk: tuple[str, list[tuple[str, bytes]]]) -> None:
            items = store.create_many(bulk[0], bulk[1])
            bad = [i for i in items if i.status not in (200, 201)]
            if bad:
                failures.append(f"{len(bad)} refused, first {bad[0].status} {bad[0].reason}")

        started = time.monotonic()
        acked: list[float] = []

        def write_all() -> None:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(write, bulks))
            acked.append(time.monotonic())

        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        samples = watch_count(store, total, timeout=300, stop=lambda: failures[0] if failures else None)
        writer.join()
    result = {"bulk_size": bulk_size, "threads": threads, **_timing(samples, total, started),
              "acked_eps": round(total / (acked[0] - started))}
    log.info("ceiling bulk=%d threads=%d: %s eps", bulk_size, threads, result["eps"])
    return result


def ceiling_sweep(stack: Settings, docs: dict[str, list[tuple[str, bytes]]], sizes: Sequence[int],
                  threads: Sequence[int]) -> list[dict]:
    runs = [ceiling_run(stack, docs, size, 1) for size in sizes]
    best_size = _best(runs)["bulk_size"]
    runs += [ceiling_run(stack, docs, best_size, n) for n in threads if n != 1]
    return runs


# --- the pipeline -------------------------------------------------------------------------------------
def _start_pipeline(launcher: Launcher, settings: Settings, concurrency: int,
                    bridge_argv: list[str] | None = None) -> dict[str, Any]:
    worker = launcher.start("worker", settings, concurrency=concurrency)
    launcher.wait_for_log(worker, "ready", timeout=90)
    bridge = launcher.start("bridge", settings, argv=bridge_argv)
    return {"worker": worker, "bridge": bridge}


def _died(procs: dict[str, Any]) -> Callable[[], str | None]:
    def check() -> str | None:
        for name, proc in procs.items():
            if not proc.alive():
                return f"{name} exited ({proc.popen.returncode}):\n{proc.tail()}"
        return None

    return check


def pipeline_run(stack: Settings, messages: Sequence[Msg], config: PipelineConfig, *, mode: str,
                 logs_dir: Path, bridge_argv: list[str] | None = None) -> dict:
    """`mode` "backlog": everything produced before the bridge starts; "live": produced while it runs."""
    total = len(messages)
    changes = {"bulk_batch_size": config.batch_size, "bulk_max_parallel_flushes": config.parallel}
    launcher = Launcher(logs_dir)
    with namespace(stack, "pipe", **changes) as (settings, store):
        try:
            if mode == "backlog":
                produce_all(settings, messages)
            procs = _start_pipeline(launcher, settings, config.concurrency, bridge_argv)
            if mode == "live":
                launcher.wait_for_log(procs["bridge"], "assigned", timeout=60)
            meter = CpuMeter.for_pipeline(procs)
            meter.start()
            started = time.monotonic()
            if mode == "live":
                producer = threading.Thread(target=produce_all, args=(settings, messages), daemon=True)
                producer.start()
            samples = watch_count(store, total, timeout=600, stop=_died(procs))
            meter.stop()
            exact = store.count(_both(store))
        finally:
            launcher.stop_all()
    result = {"mode": mode, **config.__dict__, **_timing(samples, total, started), "stored_exactly": exact == total,
              "cpu_s_per_1000": meter.per_thousand(total), "cpu_s": {k: round(v, 2) for k, v in meter.seconds.items()},
              "machine_busy": meter.machine_busy}
    log.info("pipeline %s %s: %s eps", mode, config.label(), result["eps"])
    return result


def pipeline_sweep(stack: Settings, messages: Sequence[Msg], logs_dir: Path, *, sizes: Sequence[int],
                   parallels: Sequence[int], concurrencies: Sequence[int], default: PipelineConfig) -> list[dict]:
    """One knob at a time, each at the best value of the knobs before it (a full grid is too slow here)."""
    runs = [pipeline_run(stack, messages, PipelineConfig(s, default.parallel, default.concurrency),
                         mode="backlog", logs_dir=logs_dir) for s in sizes]
    size = _best(runs)["batch_size"]
    runs += [pipeline_run(stack, messages, PipelineConfig(size, p, default.concurrency), mode="backlog",
                          logs_dir=logs_dir) for p in parallels if p != default.parallel]
    parallel = _best(runs)["parallel"]
    runs += [pipeline_run(stack, messages, PipelineConfig(size, parallel, c), mode="backlog", logs_dir=logs_dir)
             for c in concurrencies if c != default.concurrency]
    return runs


def _best(runs: Sequence[dict]) -> dict:
    return max(runs, key=lambda r: r["eps"] or 0)


# --- freshness ----------------------------------------------------------------------------------------
def freshness_run(stack: Settings, rate: float, seconds: float, logs_dir: Path, *,
                  background: Sequence[Msg] = (), background_rate: float = 0.0) -> dict:
    """Produce probes at `rate`/s (each stamped with its produce time) and time when each is searchable.

    `background` traffic, produced at `background_rate`/s alongside, puts the pipeline under load.
    """
    launcher = Launcher(logs_dir)
    with namespace(stack, "fresh") as (settings, store):
        try:
            procs = _start_pipeline(launcher, settings, 2)
            launcher.wait_for_log(procs["bridge"], "assigned", timeout=60)
            sent: dict[str, float] = {}
            lock = threading.Lock()
            run = settings.index_prefix.rstrip("-")
            probes = threading.Thread(target=_produce_probes, args=(settings, run, rate, seconds, sent, lock),
                                      daemon=True)
            loader = threading.Thread(target=_produce_paced, args=(settings, background, background_rate),
                                      daemon=True)
            probes.start()
            if background:
                loader.start()
            latencies = _watch_ids(store, sent, lock, probes, stop=_died(procs))
        finally:
            launcher.stop_all()
    result = {"probe_rate": rate, "background_rate": background_rate, "seconds": seconds,
              **summary_ms(latencies), "settings": settings_record(settings)}
    log.info("freshness at %g/s (+%g/s load): p50 %s ms, p99 %s ms", rate, background_rate, result["p50_ms"],
             result["p99_ms"])
    return result


def _produce_probes(settings: Settings, run: str, rate: float, seconds: float, sent: dict[str, float],
                    lock: threading.Lock) -> None:
    producer = Producer(producer_config(settings))
    count = int(rate * seconds)
    started = time.monotonic()
    for n in range(count):
        ahead = n / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        now = time.time()
        message = probe_span(run, n, int(now * 1000)) if n % 2 else probe_log(run, n, int(now * 1000))
        producer.produce(topic_of(settings, message.kind), message.value)
        producer.poll(0)
        with lock:
            sent[message.doc_id] = now
    producer.flush(30)


def _produce_paced(settings: Settings, messages: Sequence[Msg], rate: float) -> None:
    if not messages or rate <= 0:
        return
    producer = Producer(producer_config(settings))
    started = time.monotonic()
    for n, message in enumerate(messages):
        ahead = n / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        while True:
            try:
                producer.produce(topic_of(settings, message.kind), message.value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(30)


def _watch_ids(store: SearchStore, sent: dict[str, float], lock: threading.Lock, producer: threading.Thread,
               stop: Callable[[], str | None], settle_s: float = 30.0) -> list[float]:
    """Poll the engine for the probes not yet seen; a probe's latency is when a search first returned it."""
    index = _both(store)
    seen: dict[str, float] = {}
    deadline = None
    while True:
        with lock:
            waiting = [doc_id for doc_id in sent if doc_id not in seen][:5000]
        if waiting:
            answer = store.search(index, {"query": {"ids": {"values": waiting}}, "size": len(waiting),
                                          "_source": False})
            now = time.time()
            for hit in answer["hits"]["hits"]:
                seen.setdefault(hit["_id"], now)
        if not producer.is_alive():
            deadline = deadline or time.monotonic() + settle_s
            with lock:
                if len(seen) == len(sent) or time.monotonic() > deadline:
                    break
        if why := stop():
            raise RuntimeError(why)
        time.sleep(POLL_S)
    with lock:
        missing = len(sent) - len(seen)
        latencies = [seen[d] - sent[d] for d in seen]
    if missing:
        raise RuntimeError(f"{missing} of {len(sent)} probes not searchable {settle_s}s after the last was sent")
    return latencies


# --- the section --------------------------------------------------------------------------------------
def run(stack: Settings, out: dict, *, events: int, logs_dir: Path, quick: bool = False) -> None:
    """Fill `out` (the "ingest" section of latest.json)."""
    messages = sample_messages(events, seed=7)
    docs = documents(stack, messages)
    out["events_per_run"] = events
    out["message_mix"] = {"spans": sum(m.kind == "span" for m in messages),
                          "logs": sum(m.kind == "log" for m in messages),
                          "mean_bytes": round(sum(len(m.value) for m in messages) / len(messages))}
    sizes = (1000, 5000) if quick else (500, 1000, 2000, 5000)
    out["ceiling_runs"] = ceiling_sweep(stack, docs, sizes, (1,) if quick else (1, 2))
    ceiling = _best(out["ceiling_runs"])
    out["ceiling_eps"] = ceiling["eps"]
    out["ceiling_best"] = {"bulk_size": ceiling["bulk_size"], "threads": ceiling["threads"]}

    default = PipelineConfig(stack.bulk_batch_size, stack.bulk_max_parallel_flushes, 2)
    out["pipeline_default"] = default.__dict__
    sweep = pipeline_sweep(stack, messages, logs_dir,
                           sizes=(1000, 2000) if quick else (500, 1000, 2000, 5000),
                           parallels=() if quick else (2, 4, 8),
                           concurrencies=() if quick else (1, 2, 3), default=default)
    out["pipeline_runs"] = sweep
    best = _best(sweep)
    out["best_settings"] = {"BULK_BATCH_SIZE": best["batch_size"], "BULK_MAX_PARALLEL_FLUSHES": best["parallel"],
                            "worker_concurrency": best["concurrency"]}
    best_config = PipelineConfig(best["batch_size"], best["parallel"], best["concurrency"])
    live = pipeline_run(stack, messages, best_config, mode="live", logs_dir=logs_dir)
    out["pipeline_live"] = live
    out["pipeline_eps"] = best["eps"]
    out["pipeline_best_run"] = best
    out["ratio_to_ceiling"] = round(best["eps"] / ceiling["eps"], 3) if best["eps"] and ceiling["eps"] else None
    out["live_ratio_to_ceiling"] = round(live["eps"] / ceiling["eps"], 3) if live["eps"] and ceiling["eps"] else None
    out["cpu_s_per_1000_events"] = best["cpu_s_per_1000"]
    out["eps_per_core"] = round(best["eps"] / max(1, _cores()), 1) if best["eps"] else None

    seconds = 10 if quick else 20
    idle = freshness_run(stack, 1000, seconds, logs_dir)
    out["freshness"] = {"idle": idle}
    out["freshness_p50_ms"] = idle["p50_ms"]
    out["freshness_p99_ms"] = idle["p99_ms"]
    load_rate = round((best["eps"] or 2000) * 0.5)
    load = sample_messages(int(load_rate * seconds), seed=11, hours_back=0.5)
    out["freshness"]["half_capacity"] = freshness_run(stack, 200, seconds, logs_dir, background=load,
                                                      background_rate=load_rate)


def _cores() -> int:
    import psutil

    return psutil.cpu_count(logical=True) or 1
