"""Ingest: the pipeline (Kafka -> bridge -> Celery -> engine) against the ceiling (bulks straight to the engine).

The ceiling is the very documents the worker would write (decoded by the project's schemas from the
same messages, orjson-encoded), sent with `SearchStore.create_unstored` (the worker's own call) from 1-4
client processes or threads, with the best bulk size and parallelism found. Both are timed the same way:
by polling `_count` (no forced refresh) until every document is searchable; the rate runs from the first
refresh that shows documents to the one that shows them all, which leaves out process start-up.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.data import Msg, documents, probe_log, probe_span, produce_all, sample_messages, topic_of
from bench.env import latency_settings, namespace, settings_record, stack_pids
from bench.procs import CpuMeter, Launcher, merge_peaks
from bench.stats import Sample, first_to_all_rate, refresh_steps, steady_rate, summary_ms
from panopticon.kafka import producer_config
from panopticon.model.times import iso_to_ms
from panopticon.settings import Settings
from panopticon.storage import LOGS, TRACES, SearchStore, open_store

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
                stop: Callable[[], str | None] | None = None) -> list[Sample]:
    """A Sample (time, searchable count, count of each data stream) every POLL_S until `total` are searchable."""
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout
    indices = (store.name(TRACES), store.name(LOGS))
    while time.monotonic() < deadline:
        parts = tuple(store.count(index) for index in indices)
        samples.append(Sample(time.monotonic(), sum(parts), parts))
        if samples[-1].count >= total:
            return samples
        if stop and (why := stop()):
            raise RuntimeError(why)
        time.sleep(POLL_S)
    raise RuntimeError(f"only {samples[-1].count if samples else 0} of {total} documents searchable after {timeout}s")


def _timing(samples: list[Sample], total: int, started: float) -> dict[str, Any]:
    rate, first_to_all = steady_rate(samples, total), first_to_all_rate(samples, total)
    end = samples[-1][0]
    overall = total / (end - started)
    return {"events": total, "eps": round(rate if rate else overall),
            "rate_basis": "steady" if rate else "overall: too short for refresh steps (see stats.steady_rate)",
            "eps_first_to_all": round(first_to_all) if first_to_all else None,
            "refresh_steps": [len(refresh_steps([(x.at, x.parts[k]) for x in samples]))
                              for k in range(len(samples[-1].parts))],
            "all_searchable_s": round(end - started, 2), "overall_eps": round(overall)}


# --- the ceiling --------------------------------------------------------------------------------------
def _bulks(docs: dict[str, list[tuple[str, bytes]]], size: int) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """Bulks of `size` documents, the two streams interleaved as the pipeline's batches are."""
    per_stream = [[(stream, items[i:i + size]) for i in range(0, len(items), size)] for stream, items in docs.items()]
    return [b for pair in itertools.zip_longest(*per_stream) for b in pair if b is not None]


def _ceiling_client(settings: Settings, bulks: list[tuple[str, list[tuple[str, bytes]]]], threads: int,
                    ready: Any, go: Any, answers: Any) -> None:
    """One client process of the ceiling: its own store (HTTP client), its share of the bulks, `threads` at once.

    It connects first, says so on `ready` and waits for `go`, so process start-up and imports stay out of the
    timing; it answers with its CPU seconds from `go` to its last acknowledged bulk, or with the first refusal.
    """
    store = open_store(settings)
    store.ping()
    failures: list[str] = []
    ready.put(os.getpid())

    def write(bulk: tuple[str, list[tuple[str, bytes]]]) -> None:
        bad = [item for _, item in store.create_unstored(bulk[0], bulk[1])]  # the worker's own call
        if bad:
            failures.append(f"{len(bad)} refused, first {bad[0].status} {bad[0].reason}")

    go.wait()
    cpu = time.process_time()
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(write, bulks))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the run
        failures.append(f"{type(exc).__name__}: {exc}")
    answers.put({"cpu_s": time.process_time() - cpu, "acked_at": time.time(), "failure": failures[:1]})
    store.close()


def ceiling_run(stack: Settings, docs: dict[str, list[tuple[str, bytes]]], bulk_size: int, *, threads: int = 1,
                processes: int = 1, stage: str = "", setup: Callable[[Settings], None] | None = None) -> dict:
    """`processes` client processes (spawned: each its own interpreter and HTTP client), `threads` each,
    writing the documents in bulks of `bulk_size` (bulk i goes to process i mod `processes`). `setup`: see
    env.namespace (another checkout's templates)."""
    total = sum(len(items) for items in docs.values())
    bulks = _bulks(docs, bulk_size)
    context = multiprocessing.get_context("spawn")
    with namespace(stack, "ceil", topics=False, setup=setup) as (settings, store):
        ready, go, answers = context.Queue(), context.Event(), context.Queue()
        clients = [context.Process(target=_ceiling_client, daemon=True,
                                   args=(settings, bulks[n::processes], threads, ready, go, answers))
                   for n in range(processes)]
        try:
            for client in clients:
                client.start()
            _wait_clients_ready(clients, ready)
            meter = CpuMeter(stack_pids())
            meter.start()
            started, wall_started = time.monotonic(), time.time()
            go.set()
            replies: list[dict] = []

            def stopped() -> str | None:
                while not answers.empty():
                    replies.append(answers.get())
                if failed := next((r["failure"][0] for r in replies if r["failure"]), None):
                    return f"ceiling client: {failed}"
                dead = [c.exitcode for c in clients if c.exitcode not in (None, 0)]
                return f"ceiling client exited with {dead[0]}" if dead else None

            samples = watch_count(store, total, timeout=300, stop=stopped)
            meter.stop()
            while len(replies) < processes:
                replies.append(answers.get(timeout=60))
        finally:
            for client in clients:
                client.join(10)
                if client.is_alive():
                    client.kill()
    client_cpu = sum(r["cpu_s"] for r in replies)
    cpu_per_1000 = {**meter.per_thousand(total), "clients": round(client_cpu * 1000 / total, 4)}
    result = {"stage": stage, "bulk_size": bulk_size, "processes": processes, "threads": threads,
              "concurrent_bulks": processes * threads, **_timing(samples, total, started),
              "acked_eps": round(total / max(1e-9, max(r["acked_at"] for r in replies) - wall_started)),
              "cpu_s_per_1000": cpu_per_1000, "machine_busy": meter.machine_busy,
              "peak_rss_mb": meter.peak_rss_mb()}
    log.info("ceiling bulk=%d processes=%d threads=%d: %s eps", bulk_size, processes, threads, result["eps"])
    return result


WARM_UP_EVENTS = 50_000


def warm_engine(stack: Settings) -> None:
    """One uncounted direct-bulk run before any section measures: a freshly started engine is still compiling,
    and its first runs cost it several times the CPU of later ones (0.21 s per 1,000 events against 0.03-0.05)."""
    from bench.data import documents, sample_messages

    docs = documents(stack, sample_messages(WARM_UP_EVENTS, seed=1))
    ceiling_run(stack, docs, 5000, processes=2, stage="warm-up")


def _wait_clients_ready(clients: Sequence[Any], ready: Any, timeout: float = 120.0) -> None:
    """Spawned clients import the project and connect before they wait for `go`; one that died says so here."""
    deadline, waiting = time.monotonic() + timeout, len(clients)
    while waiting and time.monotonic() < deadline:
        dead = [c.exitcode for c in clients if c.exitcode is not None]
        if dead:
            raise RuntimeError(f"a ceiling client exited before the start ({dead[0]})")
        with contextlib.suppress(queue.Empty):
            ready.get(timeout=0.2)
            waiting -= 1
    if waiting:
        raise RuntimeError(f"{waiting} ceiling client(s) not ready after {timeout:g}s")


@dataclass(frozen=True)
class CeilingPlan:
    """What the ceiling sweeps: bulk sizes at one setting of parallelism, then parallelism at the best sizes."""

    sizes: tuple[int, ...]
    size_processes: int
    size_threads: int
    best_sizes: int
    threads: tuple[int, ...]  # in one process
    processes: tuple[int, ...]  # one thread each

    def text(self, best: Sequence[int]) -> str:
        then = [f"1 process x {', '.join(map(str, self.threads))} threads" if self.threads else "",
                f"{', '.join(map(str, self.processes))} processes x 1 thread" if self.processes else ""]
        return (f"bulk sizes {', '.join(map(str, self.sizes))} at {self.size_processes} process(es) x "
                f"{self.size_threads} thread(s); then at the best {self.best_sizes} size(s) "
                f"({', '.join(map(str, best))}): {' and '.join(t for t in then if t) or 'nothing more'}")


FULL_CEILING = CeilingPlan(sizes=(500, 1000, 2000, 5000, 10000), size_processes=1, size_threads=2, best_sizes=2,
                           threads=(1, 3, 4), processes=(2, 3, 4))
QUICK_CEILING = CeilingPlan(sizes=(1000, 5000), size_processes=1, size_threads=2, best_sizes=1, threads=(),
                            processes=(2,))


def ceiling_sweep(stack: Settings, docs: dict[str, list[tuple[str, bytes]]], plan: CeilingPlan) -> tuple[
        list[dict], str]:
    """Every run of the sweep, and the sentence saying what was swept."""
    runs = [ceiling_run(stack, docs, size, processes=plan.size_processes, threads=plan.size_threads, stage="sizes")
            for size in plan.sizes]
    ranked = sorted(runs, key=lambda r: r["eps"] or 0, reverse=True)
    best_sizes = [r["bulk_size"] for r in ranked[:plan.best_sizes]]
    for size in best_sizes:
        runs += [ceiling_run(stack, docs, size, processes=1, threads=n, stage="threads") for n in plan.threads
                 if (1, n) != (plan.size_processes, plan.size_threads)]
        runs += [ceiling_run(stack, docs, size, processes=n, threads=1, stage="processes") for n in plan.processes
                 if (n, 1) != (plan.size_processes, plan.size_threads)]
    return runs, plan.text(best_sizes)


# --- the pipeline -------------------------------------------------------------------------------------
def _start_pipeline(launcher: Launcher, settings: Settings, concurrency: int,
                    bridge_argv: list[str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Worker, then bridge (of the checkout `cwd` when given, else of the working tree)."""
    worker = launcher.start("worker", settings, concurrency=concurrency, cwd=cwd)
    launcher.wait_for_log(worker, "ready", timeout=90)
    bridge = launcher.start("bridge", settings, argv=bridge_argv, cwd=cwd)
    return {"worker": worker, "bridge": bridge}


def _died(procs: dict[str, Any]) -> Callable[[], str | None]:
    def check() -> str | None:
        for name, proc in procs.items():
            if not proc.alive():
                return f"{name} exited ({proc.popen.returncode}):\n{proc.tail()}"
        return None

    return check


def pipeline_run(stack: Settings, messages: Sequence[Msg], config: PipelineConfig, *, mode: str,
                 logs_dir: Path, bridge_argv: list[str] | None = None, cwd: Path | None = None,
                 setup: Callable[[Settings], None] | None = None) -> dict:
    """`mode` "backlog": everything produced before the bridge starts; "live": produced while it runs.

    `cwd` runs the bridge and worker of another checkout, and `setup` installs the templates (see env.namespace).
    """
    total = len(messages)
    changes = {"bulk_batch_size": config.batch_size, "bulk_max_parallel_flushes": config.parallel}
    launcher = Launcher(logs_dir)
    with namespace(stack, "pipe", setup=setup, **changes) as (settings, store):
        try:
            if mode == "backlog":
                produce_all(settings, messages)
            procs = _start_pipeline(launcher, settings, config.concurrency, bridge_argv, cwd=cwd)
            # CPU from the bridge's assignment on: its start-up (imports, group join) is not per-event work.
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
    cpu = meter.per_thousand(total)
    result = {"mode": mode, **config.__dict__, **_timing(samples, total, started), "stored_exactly": exact == total,
              "cpu_s_per_1000": cpu, "own_cpu_s_per_1000": own_cpu(cpu),
              "cpu_s": {k: round(v, 2) for k, v in meter.seconds.items()},
              "machine_busy": meter.machine_busy, "peak_rss_mb": meter.peak_rss_mb()}
    log.info("pipeline %s %s: %s eps", mode, config.label(), result["eps"])
    return result


OWN_PROCESSES = ("bridge", "worker", "otlp")


def own_cpu(cpu_per_1000: dict[str, float]) -> float:
    """CPU seconds per 1,000 events of the project's own processes (bridge + worker, + otlp receiver when used)."""
    return round(sum(cpu_per_1000.get(name, 0.0) for name in OWN_PROCESSES), 4)


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
            latencies, legs = _watch_ids(store, sent, lock, probes, stop=_died(procs))
            knobs = latency_settings(settings, store)
        finally:
            launcher.stop_all()
    result = {"probe_rate": rate, "background_rate": background_rate, "seconds": seconds,
              **summary_ms(latencies), "legs": split_latency(legs), "latency_settings": knobs,
              "settings": settings_record(settings),
              "method": (f"probes produced after {WARMUP_S:g} s of the same probes, not counted (a worker process "
                         "pays its set-up on its first batch: the templates check and its connections), by a "
                         f"producer already connected; each probe looked for every {POLL_S:g} s (up to that much is "
                         "the looking); the engine's refresh interval bounds worker start -> seen from below")}
    log.info("freshness at %g/s (+%g/s load): p50 %s ms, p99 %s ms", rate, background_rate, result["p50_ms"],
             result["p99_ms"])
    return result


def warm_producer(settings: Settings, run: str) -> Producer:
    """A producer that has already written one INFO log (not a probe) and flushed it, so its connection, metadata
    and idempotent-producer id are in place before a probe's clock starts, as in a long-lived service. Without
    it the first probes of a run wait for the bench's own producer to connect: 730, 530, 330 and 250 ms for the
    first four probes at 5/s, which was the whole idle p99 of the error stream."""
    producer = Producer(producer_config(settings))
    producer.produce(topic_of(settings, "log"), probe_log(run, -1, int(time.time() * 1000)).value)
    if producer.flush(30):
        raise RuntimeError("the bench's probe producer did not deliver its warm-up log in 30 s")
    return producer


# Probes produced at the run's rate before the measured ones, and not measured: a worker process pays its set-up
# (the templates check, its engine and Kafka connections; the engine client's import was most of it until the
# worker did that before forking) on its first batch, and a pipeline is measured running, not starting.
WARMUP_S = 2.0


def _produce_probes(settings: Settings, run: str, rate: float, seconds: float, sent: dict[str, float],
                    lock: threading.Lock) -> None:
    producer = warm_producer(settings, run)
    count, warmup = int(rate * seconds), int(rate * WARMUP_S)
    started = time.monotonic()
    for i, n in enumerate([*range(-warmup - 1, -1), *range(count)]):  # -1 was warm_producer's log
        ahead = i / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        now = time.time()
        message = probe_span(run, n, int(now * 1000)) if n % 2 else probe_log(run, n, int(now * 1000))
        producer.produce(topic_of(settings, message.kind), message.value)
        producer.poll(0)
        if n >= 0:
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
               stop: Callable[[], str | None], settle_s: float = 30.0) -> tuple[list[float], list[tuple[float, float]]]:
    """Poll the engine for the probes not yet seen; a probe's latency is when a search first returned it.

    Also returns, per probe, (latency, produce -> the worker began its batch: its stored `ingested_at`), to
    split the latency into produce -> worker (Kafka, the bridge's batching, the hand-off, the queue) and
    worker -> searchable (decoding, the bulk write, the engine's refresh).
    """
    index = _both(store)
    seen: dict[str, float] = {}
    ingested: dict[str, float] = {}
    deadline = None
    while True:
        with lock:
            waiting = [doc_id for doc_id in sent if doc_id not in seen][:5000]
        if waiting:
            answer = store.search(index, {"query": {"ids": {"values": waiting}}, "size": len(waiting),
                                          "_source": ["ingested_at"]})
            now = time.time()
            for hit in answer["hits"]["hits"]:
                seen.setdefault(hit["_id"], now)
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    ingested.setdefault(hit["_id"], iso_to_ms(hit["_source"]["ingested_at"]) / 1000)
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
        legs = [(seen[d] - sent[d], ingested[d] - sent[d]) for d in seen if d in ingested]
    if missing:
        raise RuntimeError(f"{missing} of {len(sent)} probes not searchable {settle_s}s after the last was sent")
    return latencies, legs


def split_latency(legs: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Percentiles (ms) of the two legs of (latency, produce -> worker start) pairs. `ingested_at` is stamped to
    the ms when the worker starts a batch, by the same clock (one machine)."""
    return {"produce_to_worker_start": summary_ms([w for _, w in legs]),
            "worker_start_to_seen": summary_ms([t - w for t, w in legs])}


# --- the section --------------------------------------------------------------------------------------
PIPELINE_SIZES = (1000, 2000, 5000, 10000)
HALF = 0.5  # "50% of the pipeline's capacity"


def run(stack: Settings, out: dict, *, events: int, logs_dir: Path, quick: bool = False) -> None:
    """Fill `out` (the "ingest" section of latest.json)."""
    messages = sample_messages(events, seed=7)
    docs = documents(stack, messages)
    out["events_per_run"] = events
    out["message_mix"] = {"spans": sum(m.kind == "span" for m in messages),
                          "logs": sum(m.kind == "log" for m in messages),
                          "mean_bytes": round(sum(len(m.value) for m in messages) / len(messages))}
    out["rate_method"] = ("per data stream, events/s between its first refresh that shows documents and its last "
                          "refresh before the one that shows them all, summed over the two (polling `_count` every "
                          "0.1 s, no forced refresh); `eps_first_to_all` is first-to-all of the sum, as recorded "
                          "before, for comparison. CPU is counted from the bridge's partition assignment (process "
                          "start-up left out) to the last document searchable")
    _ceiling(stack, docs, out, QUICK_CEILING if quick else FULL_CEILING)

    default = PipelineConfig(stack.bulk_batch_size, stack.bulk_max_parallel_flushes, 2)
    out["pipeline_default"] = default.__dict__
    sweep = pipeline_sweep(stack, messages, logs_dir,
                           sizes=(1000, 5000) if quick else PIPELINE_SIZES,
                           parallels=() if quick else (2, 4, 8),
                           concurrencies=() if quick else (1, 2, 3), default=default)
    out["pipeline_runs"] = sweep
    best = _best(sweep)
    out["best_settings"] = {"BULK_BATCH_SIZE": best["batch_size"], "BULK_MAX_PARALLEL_FLUSHES": best["parallel"],
                            "worker_concurrency": best["concurrency"]}
    best_config = PipelineConfig(best["batch_size"], best["parallel"], best["concurrency"])
    out["best_config"] = best_config.__dict__
    live = pipeline_run(stack, messages, best_config, mode="live", logs_dir=logs_dir)
    out["pipeline_live"] = live
    out["pipeline_eps"] = best["eps"]
    out["pipeline_best_run"] = best
    ceiling_eps = out["ceiling_eps"]
    out["ratio_to_ceiling"] = round(best["eps"] / ceiling_eps, 3) if best["eps"] and ceiling_eps else None
    out["live_ratio_to_ceiling"] = round(live["eps"] / ceiling_eps, 3) if live["eps"] and ceiling_eps else None
    out["cpu_s_per_1000_events"] = best["cpu_s_per_1000"]
    out["own_cpu_s_per_1000"] = {"backlog": best["own_cpu_s_per_1000"], "live": live["own_cpu_s_per_1000"],
                                 "goal": OWN_CPU_GOAL_S, "processes": "bridge + worker"}
    out["engine_cpu_s_per_1000"] = {"backlog": best["cpu_s_per_1000"].get("engine"),
                                    "live": live["cpu_s_per_1000"].get("engine"),
                                    "ceiling": out["ceiling_best_run"]["cpu_s_per_1000"].get("engine")}
    out["eps_per_core"] = round(best["eps"] / max(1, _cores()), 1) if best["eps"] else None
    out["peak_rss_mb"] = merge_peaks(*(r["peak_rss_mb"] for r in [*sweep, live]))
    out["peak_rss_note"] = (f"highest over the {len(sweep) + 1} pipeline runs (backlog sweep and live), sampled "
                            "every 0.2 s; a tree's sum counts pages its processes share once per process")

    seconds = 10 if quick else 20
    idle = freshness_run(stack, 1000, seconds, logs_dir)
    out["freshness"] = {"idle": idle}
    out["freshness_p50_ms"] = idle["p50_ms"]
    out["freshness_p99_ms"] = idle["p99_ms"]
    out["freshness_legs"] = idle["legs"]
    out["latency_settings"] = idle["latency_settings"]
    load_rate = round((best["eps"] or 2000) * HALF)
    load = sample_messages(int(load_rate * seconds), seed=11, hours_back=0.5)
    out["freshness"]["half_capacity"] = freshness_run(stack, 200, seconds, logs_dir, background=load,
                                                      background_rate=load_rate)


OWN_CPU_GOAL_S = 0.020


def _ceiling(stack: Settings, docs: dict[str, list[tuple[str, bytes]]], out: dict, plan: CeilingPlan) -> None:
    runs, swept = ceiling_sweep(stack, docs, plan)
    ceiling = _best(runs)
    out["ceiling_runs"] = runs
    out["ceiling_swept"] = swept
    out["ceiling_eps"] = ceiling["eps"]
    out["ceiling_best"] = {"bulk_size": ceiling["bulk_size"], "processes": ceiling["processes"],
                           "threads": ceiling["threads"]}
    out["ceiling_best_run"] = ceiling
    out["ceiling_engine_cpu_s_per_1000"] = ceiling["cpu_s_per_1000"].get("engine")
    out["ceiling_peak_rss_mb"] = merge_peaks(*(r["peak_rss_mb"] for r in runs))


def _cores() -> int:
    import psutil

    return psutil.cpu_count(logical=True) or 1
