"""OTLP: the same spans through the JSON path and the OTLP protobuf path, side by side in one run.

* JSON path: the spans as JSON messages produced to `apm.spans`, then bridge -> worker -> engine (backlog).
* OTLP path: the same spans as ExportTraceServiceRequests of 512 spans (the SDK's default batch, encoded by
  the SDK's own encoder) POSTed to the real `otlp` process by a few concurrent clients (the receiver's CPU
  per span), then bridge -> worker -> engine (backlog).
* `/v1/traces` alone: thousands of those requests (round robin) against a receiver with nothing else
  running: requests/s and latency percentiles.

Both pipeline legs start from a full topic and are timed the same way as the ingest section (first to last
refresh that shows documents), with CPU seconds per 1,000 spans for each process; the goal is a worker that
spends no more CPU on a span as OTLP protobuf than as JSON.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data import Msg, sample_messages
from bench.env import namespace
from bench.ingest import PipelineConfig, _died, _start_pipeline, _timing, own_cpu, pipeline_run, watch_count
from bench.otlp_data import otlp_requests
from bench.procs import CpuMeter, Launcher, merge_peaks
from bench.stats import summary_ms
from panopticon.settings import Settings

log = logging.getLogger("bench.otlp")

BATCH = 512
CLIENTS = 4


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, proc: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if not proc.alive():
            raise RuntimeError(f"otlp exited:\n{proc.tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"otlp did not answer in {timeout:g}s:\n{proc.tail()}")


def post_all(port: int, bodies: Sequence[bytes], clients: int = CLIENTS) -> dict[str, Any]:
    """POST every body to /v1/traces from `clients` keep-alive connections; requests/s and latencies."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    queue = list(reversed(bodies))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            started = time.perf_counter()
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            answer = conn.getresponse()
            answer.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if answer.status != 200:
                    failures.append(str(answer.status))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    if failures:
        raise RuntimeError(f"{len(failures)} OTLP requests not answered 200 (first: {failures[0]})")
    return {"requests": len(bodies), "clients": clients, "seconds": round(wall, 2),
            "requests_per_s": round(len(bodies) / wall, 1), **summary_ms(latencies)}


def otlp_pipeline_run(stack: Settings, requests: Sequence[tuple[bytes, list[str]]], config: PipelineConfig, *,
                      logs_dir: Path) -> dict[str, Any]:
    spans = sum(len(ids) for _, ids in requests)
    changes = {"bulk_batch_size": config.batch_size, "bulk_max_parallel_flushes": config.parallel,
               "otlp_http_port": _free_port()}
    launcher = Launcher(logs_dir)
    with namespace(stack, "otlp", **changes) as (settings, store):
        try:
            receiver = launcher.start("otlp", settings)
            _wait_healthy(settings.otlp_http_port, receiver)
            receiver_meter = CpuMeter({"otlp": receiver.popen.pid})
            receiver_meter.start()
            http = post_all(settings.otlp_http_port, [body for body, _ in requests])
            receiver_meter.stop()
            procs = _start_pipeline(launcher, settings, config.concurrency)
            launcher.wait_for_log(procs["bridge"], "assigned", timeout=60)  # as ingest.pipeline_run
            meter = CpuMeter.for_pipeline(procs)
            meter.start()
            started = time.monotonic()
            samples = watch_count(store, spans, timeout=600, stop=_died(procs))
            meter.stop()
            exact = store.count(f"{store.name('traces-apm')},{store.name('logs-apm')}")
        finally:
            launcher.stop_all()
    cpu = meter.per_thousand(spans)
    cpu["otlp"] = receiver_meter.per_thousand(spans)["otlp"]
    return {"mode": "backlog", **config.__dict__, **_timing(samples, spans, started), "stored_exactly": exact == spans,
            "cpu_s_per_1000": cpu, "own_cpu_s_per_1000": own_cpu(cpu), "http": http,
            "receiver_cpu_s": round(receiver_meter.seconds["otlp"], 2), "machine_busy": meter.machine_busy,
            "peak_rss_mb": merge_peaks(receiver_meter.peak_rss_mb(), meter.peak_rss_mb())}


def receiver_load(stack: Settings, bodies: Sequence[bytes], requests: int, *, logs_dir: Path) -> dict[str, Any]:
    """`/v1/traces` alone (no bridge or worker running): `requests` POSTs of the given 512-span bodies, round
    robin, from CLIENTS connections; requests/s, latency percentiles and the receiver's CPU per request."""
    launcher = Launcher(logs_dir)
    with namespace(stack, "otlpload", otlp_http_port=_free_port()) as (settings, _store):
        try:
            receiver = launcher.start("otlp", settings)
            _wait_healthy(settings.otlp_http_port, receiver)
            meter = CpuMeter({"otlp": receiver.popen.pid})
            meter.start()
            result = post_all(settings.otlp_http_port, [bodies[n % len(bodies)] for n in range(requests)])
            meter.stop()
        finally:
            launcher.stop_all()
    result["receiver_cpu_ms_per_request"] = round(meter.seconds["otlp"] * 1000 / requests, 2)
    result["machine_busy"] = meter.machine_busy
    result["peak_rss_mb"] = meter.peak_rss_mb()
    return result


def run(stack: Settings, out: dict[str, Any], *, quick: bool, logs_dir: Path) -> None:
    """Fill `out` (the "otlp" section of latest.json)."""
    count = 20_000 if quick else 100_000
    spans: list[Msg] = []
    seed = 21
    while len(spans) < count:
        spans += [m for m in sample_messages(count, seed=seed) if m.kind == "span"]
        seed += 1
    spans = spans[:count]
    requests = otlp_requests(spans, BATCH)
    out["spans"] = count
    out["batch_spans"] = BATCH
    out["mean_bytes_per_span"] = {"json": round(sum(len(m.value) for m in spans) / count),
                                  "otlp_proto": round(sum(len(b) for b, _ in requests) / count)}
    config = PipelineConfig(stack.bulk_batch_size, stack.bulk_max_parallel_flushes, 2)
    out["config"] = config.__dict__
    json_run = pipeline_run(stack, spans, config, mode="backlog", logs_dir=logs_dir)
    otlp_run = otlp_pipeline_run(stack, requests, config, logs_dir=logs_dir)
    out["json"] = json_run
    out["otlp_proto"] = otlp_run
    load = receiver_load(stack, [body for body, _ in requests], 500 if quick else 3000, logs_dir=logs_dir)
    out["v1_traces_load"] = load
    out["v1_traces_requests_per_s"] = load["requests_per_s"]
    out["v1_traces_p99_ms"] = load["p99_ms"]
    out["eps_json"], out["eps_otlp"] = json_run["eps"], otlp_run["eps"]
    worker_json = json_run["cpu_s_per_1000"].get("worker")
    worker_otlp = otlp_run["cpu_s_per_1000"].get("worker")
    out["worker_cpu_ratio_otlp_to_json"] = round(worker_otlp / worker_json, 3) if worker_json and worker_otlp else None
    out["own_cpu_s_per_1000"] = {"json": json_run["own_cpu_s_per_1000"], "otlp": otlp_run["own_cpu_s_per_1000"],
                                 "processes": "bridge + worker (+ otlp receiver on the OTLP path)"}
    out["peak_rss_mb"] = merge_peaks(json_run["peak_rss_mb"], otlp_run["peak_rss_mb"], load["peak_rss_mb"])
    log.info("otlp: json %s eps, otlp %s eps; worker CPU/1000 spans json %s, otlp %s; /v1/traces %s req/s p99 %s ms",
             json_run["eps"], otlp_run["eps"], worker_json, worker_otlp, out["v1_traces_requests_per_s"],
             out["v1_traces_p99_ms"])
