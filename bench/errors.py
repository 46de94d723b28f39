"""Error stream: produce an ERROR log -> it arrives on a WebSocket (`/ws/error-logs`), end to end.

The whole chain runs as the Procfile runs it: bridge, worker, relay (apm.logs.error -> Redis pub/sub)
and one `ws` process (gunicorn, gevent). Each probe log carries its produce time; every socket notes
when the probe arrived, so one probe gives one latency per socket. Measured at idle, under ingest load
(half of the pipeline's capacity as the ingest section measured it, with its best settings; a stated
default when that section did not run), and (publishing straight to the relay's Redis channel) with more
and more sockets on the one `ws` process.

Each frame carries the stored log, whose `ingested_at` is when the worker began the probe's batch: the
latency is split there, into produce -> worker start (Kafka, the bridge's batch age, the hand-off, the
queue) and worker start -> socket (decoding, the bulk write, the error-topic copy, relay, Redis, `ws`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis
import websockets
from confluent_kafka import Producer

from bench.data import Msg, probe_log, sample_messages, topic_of
from bench.env import latency_settings, namespace
from bench.ingest import HALF, PipelineConfig, _produce_paced, _start_pipeline, warm_producer
from bench.procs import CpuMeter, Launcher, Proc
from bench.query import get
from bench.stats import summary_ms
from panopticon.errorstream.protocol import envelope, make_cursor
from panopticon.model.times import iso_ms, iso_to_ms
from panopticon.settings import Settings

log = logging.getLogger("bench.errors")

WS_PORT = 3911
# ERROR probes under load: every socket receives each probe, so the p99 is the probes' own; of 200 that is the
# 2nd slowest (of the 50 idle ones it would be the slowest).
LOADED_PROBES = 200
LOADED_PROBE_RATE = 10.0
P99_GOAL_MS = 1000.0
DEFAULT_LOAD_RATE = 3000  # events/s under load when the ingest section did not measure the capacity


def start_ws(launcher: Launcher, settings: Settings) -> Proc:
    """The Procfile's `ws` line, bound to loopback."""
    proc = launcher.start("ws", settings.replace(ws_port=WS_PORT, ws_bind_host="127.0.0.1"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if get(WS_PORT, "/healthz")[0] == 200:
                return proc
        except OSError:
            pass
        if not proc.alive():
            raise RuntimeError(f"ws exited:\n{proc.tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"ws did not answer on {WS_PORT}:\n{proc.tail()}")


class Sockets:
    """N client sockets in one asyncio loop (its own thread); each notes when it received which probe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.received: list[tuple[str, float]] = []  # (doc id, time.time())
        self.ingested: dict[str, float] = {}  # doc id -> its stored ingested_at (epoch seconds)
        self.connections: list[Any] = []
        self.tasks: list[Any] = []

    def open(self, count: int) -> int:
        return asyncio.run_coroutine_threadsafe(self._open(count), self.loop).result(300)

    async def _open(self, count: int) -> int:
        async def one() -> None:
            connection = await websockets.connect(self.url, open_timeout=60, ping_interval=None,
                                                  max_queue=None, compression=None)
            self.connections.append(connection)
            self.tasks.append(asyncio.ensure_future(self._read(connection)))

        pending = [one() for _ in range(count)]
        for start in range(0, len(pending), 100):  # open in waves: a listen backlog is finite
            await asyncio.gather(*pending[start:start + 100])
        return len(self.connections)

    async def _read(self, connection: Any) -> None:
        try:
            async for frame in connection:
                now = time.time()
                event = orjson.loads(frame)
                if event.get("event") == "error-log":
                    self.received.append((event.get("id"), now))
                    with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                        self.ingested.setdefault(event["id"], iso_to_ms(event["log"]["ingested_at"]) / 1000)
        except websockets.ConnectionClosed:
            return

    def reset(self) -> None:
        self.received = []
        self.ingested = {}

    def close(self) -> None:
        async def close_all() -> None:
            await asyncio.gather(*(c.close() for c in self.connections), return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(120)
        self.connections = []
        self.loop.call_soon_threadsafe(self.loop.stop)


def probe(producer: Producer, settings: Settings, sockets: Sockets, run: str, count: int, rate: float, first: int,
          settle_s: float = 15.0) -> dict[str, Any]:
    """Produce `count` ERROR probes at `rate`/s with `producer` (connected: `warm_producer`); latency of each
    (probe, socket) arrival."""
    sockets.reset()
    sent: dict[str, float] = {}
    started = time.monotonic()
    for n in range(first, first + count):
        ahead = (n - first) / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        now = time.time()
        message: Msg = probe_log(run, n, int(now * 1000), level="ERROR")
        producer.produce(topic_of(settings, "log"), message.value)
        producer.poll(0)
        sent[message.doc_id] = now
    producer.flush(30)
    expected = count * len(sockets.connections)
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline and _arrivals(sockets, sent) < expected:
        time.sleep(0.2)
    arrivals = [(doc_id, at) for doc_id, at in list(sockets.received) if doc_id in sent]
    latencies = [at - sent[doc_id] for doc_id, at in arrivals]
    to_worker = [(sockets.ingested[d] - sent[d], at - sockets.ingested[d]) for d, at in arrivals
                 if d in sockets.ingested]
    return {"sockets": len(sockets.connections), "probes": count, "probe_rate": rate, "expected": expected,
            "received": len(latencies), **summary_ms(latencies),
            "slowest_to_worker_start": _slowest(sockets, sent),
            "legs": {"produce_to_worker_start": summary_ms([a for a, _ in to_worker]),
                     "worker_start_to_socket": summary_ms([b for _, b in to_worker])}}


def under_load(producer: Producer, settings: Settings, sockets: Sockets, run_id: str, probes: int, load_rate: int,
               first: int, probe_rate: float = LOADED_PROBE_RATE) -> dict[str, Any]:
    """Probes at `probe_rate`/s while `load_rate` events/s of ordinary traffic are produced alongside. The load is
    seeded by `first`, which each run has of its own (its probes' ids start there): a load with another run's
    ids would be refused as already stored, and a 409 is a lighter load than a write."""
    seconds = probes / probe_rate + 5
    load = sample_messages(int(load_rate * seconds), seed=first, hours_back=0.2)
    loader = threading.Thread(target=_produce_paced, args=(settings, load, load_rate), daemon=True)
    load_started = time.monotonic()
    loader.start()
    time.sleep(2)  # let the load reach the pipeline first
    busy = probe(producer, settings, sockets, run_id, probes, probe_rate, first)
    loader.join()
    achieved = len(load) / (time.monotonic() - load_started)
    log.info("error stream under %g/s: p50 %s ms, p99 %s ms", load_rate, busy["p50_ms"], busy["p99_ms"])
    return {**busy, "load_rate": load_rate, "load_rate_achieved": round(achieved)}


def warm_workers(producer: Producer, settings: Settings, run: str, processes: int) -> str:
    """INFO logs (no socket sees them), a few per worker process, before the idle probes: each process pays its
    set-up (the templates check, its engine and Kafka connections) on its first batch, which is start-up, not the
    idle path. Spaced so that they make separate batches and reach every process."""
    for n in range(4 * processes):
        time.sleep(0.1)
        producer.produce(topic_of(settings, "log"), probe_log(run, -2 - n, int(time.time() * 1000)).value)
        producer.poll(0)
    producer.flush(30)
    time.sleep(1.0)
    return (f"{4 * processes} INFO logs, 0.1 s apart, so that each of the {processes} worker processes has had its "
            "first batch (its set-up), produced by the probes' producer, already connected")


def _slowest(sockets: Sockets, sent: dict[str, float], most: int = 5) -> list[dict[str, Any]]:
    """The probes that took longest from produce to the worker's start, in produce order's terms: which probe
    (its place in the run, 0-based) and how long, so a wait that comes once (a first connection) reads apart
    from one that recurs (a timer)."""
    order = {doc_id: n for n, doc_id in enumerate(sent)}
    waits = sorted(((sockets.ingested[d] - at, d) for d, at in sent.items() if d in sockets.ingested), reverse=True)
    return [{"probe": order[d], "ms": round(wait * 1000, 1)} for wait, d in waits[:most]]


def fan_out(settings: Settings, sockets: Sockets, run: str, count: int, rate: float, first: int,
            settle_s: float = 15.0) -> dict[str, Any]:
    """Publish `count` envelopes straight to the Redis channel the relay publishes to, at `rate`/s:
    the latency of the `ws` process alone (Redis -> every socket), which is what more sockets load."""
    sockets.reset()
    client = redis.Redis.from_url(settings.redis_url(), socket_timeout=5)
    sent: dict[str, float] = {}
    started = time.monotonic()
    for n in range(first, first + count):
        ahead = (n - first) / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        now = time.time()
        doc_id = f"{run}-f{n}"
        at = iso_ms(int(now * 1000))
        document = {"@timestamp": at, "timestamp": at, "service_name": "probe", "environment": "bench",
                    "level": "ERROR", "level_num": 5, "message": f"fan-out probe {n}", "event_id": doc_id,
                    "ingested_at": at, "attributes": {}}
        client.publish(settings.error_channel, envelope(doc_id, make_cursor(int(now * 1000), doc_id), document))
        sent[doc_id] = now
    expected = count * len(sockets.connections)
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline and _arrivals(sockets, sent) < expected:
        time.sleep(0.2)
    latencies = [at - sent[doc_id] for doc_id, at in list(sockets.received) if doc_id in sent]
    return {"sockets": len(sockets.connections), "probes": count, "expected": expected,
            "received": len(latencies), **summary_ms(latencies)}


def _arrivals(sockets: Sockets, sent: dict[str, float]) -> int:
    return sum(1 for doc_id, _ in list(sockets.received) if doc_id in sent)


def _load_basis(live_eps: float | None, capacity_eps: float | None) -> str:
    if live_eps:
        return (f"{HALF:.0%} of the pipeline's capacity while producing ({round(live_eps):,} events/s, the ingest "
                "section's run produced while running, with the best backlog settings)")
    if capacity_eps:
        return (f"{HALF:.0%} of the pipeline's capacity ({round(capacity_eps):,} events/s, the ingest section's best "
                "backlog run, with its settings)")
    return (f"a fixed {DEFAULT_LOAD_RATE:,} events/s (the ingest section did not run, so the pipeline's capacity "
            "is unknown)")


def run(stack: Settings, out: dict, *, quick: bool, logs_dir: Path, capacity_eps: float | None = None,
        live_eps: float | None = None, config: PipelineConfig | None = None) -> None:
    """Fill `out` (the "errors" section). `capacity_eps`, `live_eps` and `config`: the ingest section's best backlog
    rate, its rate produced while running and its settings. The goal's load is HALF of the rate produced while
    running: that load is produced while the pipeline runs, on the same two cores, so the backlog rate (nothing
    produced meanwhile) overstates what the pipeline can take then. HALF of the backlog rate is measured too."""
    steps: Sequence[int] = (50, 200) if quick else (100, 500, 1000, 1900)
    probes = 20 if quick else 50
    loaded_probes = 40 if quick else LOADED_PROBES
    basis = live_eps or capacity_eps
    load_rate = round(basis * HALF) if basis else DEFAULT_LOAD_RATE
    out["load_basis"] = _load_basis(live_eps, capacity_eps)
    config = config or PipelineConfig(stack.bulk_batch_size, stack.bulk_max_parallel_flushes, 2)
    out["config"] = config.__dict__
    launcher = Launcher(logs_dir)
    with namespace(stack, "errs", bulk_batch_size=config.batch_size,
                   bulk_max_parallel_flushes=config.parallel) as (settings, store):
        try:
            procs = _start_pipeline(launcher, settings, config.concurrency)
            relay = launcher.start("relay", settings)
            launcher.wait_for_log(relay, "relay assigned", timeout=60)
            launcher.wait_for_log(procs["bridge"], "assigned", timeout=60)
            ws = start_ws(launcher, settings)
            meter = CpuMeter.for_pipeline({**procs, "relay": relay, "ws": ws})
            meter.start()
            out["latency_settings"] = latency_settings(settings, store)
            sockets = Sockets(f"ws://127.0.0.1:{WS_PORT}{settings.ws_path}")
            try:
                run_id = settings.index_prefix.rstrip("-")
                sockets.open(10)
                producer = warm_producer(settings, run_id)
                out["warmup"] = warm_workers(producer, settings, run_id, config.concurrency)
                idle = probe(producer, settings, sockets, run_id, probes, 5, 0)
                out["idle"] = idle
                out["p50_ms"], out["p99_ms"] = idle["p50_ms"], idle["p99_ms"]
                out["idle_legs"] = idle["legs"]
                log.info("error stream idle: p50 %s ms, p99 %s ms", idle["p50_ms"], idle["p99_ms"])

                busy = under_load(producer, settings, sockets, run_id, loaded_probes, load_rate, 10_000)
                out["under_load"] = busy
                out["load_rate"] = load_rate
                out["p50_ms_under_load"], out["p99_ms_under_load"] = busy["p50_ms"], busy["p99_ms"]
                out["p99_ms_half_capacity"] = busy["p99_ms"] if basis else None
                if live_eps and capacity_eps:
                    out["under_half_backlog_capacity"] = under_load(producer, settings, sockets, run_id, loaded_probes,
                                                                    round(capacity_eps * HALF), 15_000)

                out["sockets"] = []
                held = None
                for n, target in enumerate(steps):
                    sockets.open(target - len(sockets.connections))
                    step = fan_out(settings, sockets, run_id, 20, 5, 20_000 + n * 1000)
                    out["sockets"].append(step)
                    log.info("%d sockets: p99 %s ms, %d/%d received", step["sockets"], step["p99_ms"],
                             step["received"], step["expected"])
                    complete = step["received"] == step["expected"]
                    if not complete or (step["p99_ms"] or 0) >= P99_GOAL_MS:
                        break
                    held = step["sockets"]
                out["sockets_p99_under_1s"] = held
                out["sockets_note"] = (f"largest tested step (of {list(steps)}) at which every envelope published to "
                                       "the relay's Redis channel reached every socket, with p99 (publish -> "
                                       "receive) under 1 s; the client sockets run in the bench process on the "
                                       "same 2 cores")
            finally:
                sockets.close()
            meter.stop()
            out["peak_rss_mb"] = meter.peak_rss_mb()
        finally:
            launcher.stop_all()
