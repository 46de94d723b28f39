"""Queries: latency of the metrics route (`GET /query/services/<name>/metrics`) for 1 h, 24 h and 7 d.

The data set: 20 services x 3 endpoints. Raw spans for the last RAW_HOURS (so 1 h and 24 h can also
be answered from raw spans alone), one-minute rollups for that period and hourly rollups for a week
before it. Raw spans are decoded from span messages by the project's schemas and written in bulk
(ingest is measured elsewhere); rollup documents are built with the project's own rollup code
(`Row`, `with_service_totals`, `write_rows`) from the same spans, so they are what beat would write.

Two `web` processes run the Procfile's command on the same data: ROLLUP_ENABLED=true (rollups for
the past, raw for the newest part) and ROLLUP_ENABLED=false (raw only). "cold": the Redis cache and
the engine's request cache are cleared before each request; "cached": the same question again.
"""

from __future__ import annotations

import http.client
import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.env import namespace
from bench.procs import Launcher, Proc
from bench.stats import percentile
from panopticon.model.times import iso_ms
from panopticon.processing.schemas import Decoded, decode_span
from panopticon.rollup import documents as rollup_docs
from panopticon.rollup import job
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.documents import HOURLY, Key, Row
from panopticon.settings import Settings
from panopticon.storage import METRICS, TRACES, SearchStore

log = logging.getLogger("bench.query")

SERVICES = 20
ENDPOINTS = ("GET /items", "POST /orders", "GET /users/:id")
RAW_HOURS = 25
ROLLUP_DAYS = 8
MINUTE = 60_000
HOUR = 3_600_000
RANGES = {"1h": HOUR, "24h": 24 * HOUR, "7d": 7 * 24 * HOUR}


# --- the data set -------------------------------------------------------------------------------------
def _latency(rng: random.Random, service: int, endpoint: int) -> float:
    return round((8 + 4 * service + 10 * endpoint) * math.exp(rng.gauss(0, 0.6)), 3)


def raw_spans(settings: Settings, start_ms: int, end_ms: int, per_minute: int, seed: int) -> list[tuple[str, dict]]:
    """Request spans (SERVER, with http) for every service and endpoint, `per_minute` each minute."""
    rng = random.Random(seed)
    decode = decode_span
    now = int(time.time() * 1000)
    out = []
    n = 0
    for minute in range(start_ms, end_ms, MINUTE):
        for s in range(SERVICES):
            for e, route in enumerate(ENDPOINTS):
                for _ in range(per_minute):
                    n += 1
                    failed = rng.random() < 0.02
                    method, path = route.split(" ", 1)
                    body = {"trace_id": f"q{seed}t{n}", "span_id": f"q{seed}s{n}", "service_name": f"svc-{s:02d}",
                            "environment": "production", "name": route, "kind": "SERVER",
                            "status": "ERROR" if failed else "OK", "start_time": minute + rng.randrange(MINUTE),
                            "duration_ms": _latency(rng, s, e),
                            "http": {"method": method, "route": path, "status_code": 500 if failed else 200}}
                    decoded = decode(orjson.dumps(body), topic="bench", partition=0, offset=n, now_ms=now)
                    if not isinstance(decoded, Decoded):
                        raise ValueError(f"bench span refused: {decoded.reason}")
                    out.append((decoded.doc_id, decoded.document))
    return out


def _epoch_ms(iso: str) -> int:
    from panopticon.model.times import parse_time

    return int(parse_time(iso))


def minute_rows(spans: Sequence[tuple[str, dict]]) -> dict[int, dict[Key, Row]]:
    """One-minute rollup rows of the spans, as `job.aggregate_windows` would return them."""
    windows: dict[int, dict[Key, Row]] = {}
    for _doc_id, doc in spans:
        window = _epoch_ms(doc["@timestamp"]) // MINUTE * MINUTE
        key = Key(doc["service_name"], doc["environment"], doc["endpoint"])
        row = windows.setdefault(window, {}).setdefault(key, Row())
        _add(row.aggregate, doc["duration_ms"], doc["is_error"])
    return {window: job.with_service_totals(rows) for window, rows in windows.items()}


def _add(aggregate: Aggregate, duration_ms: float, is_error: bool) -> None:
    """One request into an Aggregate (as merging a one-request Aggregate would, without building one)."""
    aggregate.requests += 1
    aggregate.errors += int(is_error)
    aggregate.duration_sum += duration_ms
    aggregate.duration_min = duration_ms if aggregate.duration_min is None else min(aggregate.duration_min,
                                                                                      duration_ms)
    aggregate.duration_max = duration_ms if aggregate.duration_max is None else max(aggregate.duration_max,
                                                                                      duration_ms)
    aggregate.histogram.add(duration_ms)


def hour_rows(minutes: dict[int, dict[Key, Row]]) -> dict[int, dict[Key, Row]]:
    """Hourly rows merged from whole hours of minute rows (what `job.roll_hour` writes)."""
    hours: dict[int, dict[Key, Row]] = {}
    for window, rows in sorted(minutes.items()):
        merged = hours.setdefault(window // HOUR * HOUR, {})
        for key, row in rows.items():
            merged.setdefault(key, Row()).merge(row)
    return hours


def synthetic_hours(start_ms: int, end_ms: int, per_minute: int, seed: int) -> dict[int, dict[Key, Row]]:
    """Hourly rows for the week before the raw period (only hourly rollups are kept that far back here)."""
    rng = random.Random(seed)
    hours: dict[int, dict[Key, Row]] = {}
    for hour in range(start_ms, end_ms, HOUR):
        rows: dict[Key, Row] = {}
        for s in range(SERVICES):
            for e, route in enumerate(ENDPOINTS):
                row = rows[Key(f"svc-{s:02d}", "production", route)] = Row()
                for _ in range(60 * per_minute):
                    _add(row.aggregate, _latency(rng, s, e), rng.random() < 0.02)
        hours[hour] = job.with_service_totals(rows)
    return hours


def build(settings: Settings, store: SearchStore, now_ms: int, per_minute: int) -> dict[str, Any]:
    started = time.monotonic()
    raw_start = now_ms - RAW_HOURS * HOUR
    spans = raw_spans(settings, raw_start, now_ms, per_minute, seed=17)
    items = [(doc_id, orjson.dumps(doc)) for doc_id, doc in spans]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda chunk: store.create_many(TRACES, chunk),
                      [items[i:i + 5000] for i in range(0, len(items), 5000)]))
    minutes = minute_rows(spans)
    closed = {w: rows for w, rows in minutes.items() if w + MINUTE <= now_ms}
    hours = {h: rows for h, rows in hour_rows(closed).items() if h + HOUR <= now_ms and h >= raw_start}
    old = synthetic_hours(now_ms - ROLLUP_DAYS * 24 * HOUR, raw_start // HOUR * HOUR, per_minute, seed=23)
    tier = rollup_docs.minute_tier(settings.rollup_bucket_minutes)
    written = job.write_rows(store, tier, closed, now_ms) + job.write_rows(store, HOURLY, {**old, **hours}, now_ms)
    job.set_mark(store, now_ms + 1)  # every span above was stored at now_ms and is in the documents written
    store.refresh(f"{store.name(TRACES)},{settings.data_stream(METRICS)}-*")
    return {"services": SERVICES, "endpoints_per_service": len(ENDPOINTS), "raw_spans": len(spans),
            "raw_hours": RAW_HOURS, "requests_per_endpoint_minute": per_minute, "rollup_documents": written,
            "rollup_days": ROLLUP_DAYS, "build_seconds": round(time.monotonic() - started, 1)}


# --- the web processes --------------------------------------------------------------------------------
def start_web(launcher: Launcher, settings: Settings, port: int) -> Proc:
    """The Procfile's `web` line, bound to loopback on `port`."""
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
            "--workers", "1", "--threads", "16", "wsgi:app"]
    proc = launcher.start("web", settings.replace(api_port=port), argv=argv)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, _headers, _body = get(port, "/healthz")
            if status == 200:
                return proc
        except OSError:
            pass
        if not proc.alive():
            raise RuntimeError(f"web exited:\n{proc.tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"web did not answer on {port}:\n{proc.tail()}")


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _clear_caches(settings: Settings, store: SearchStore, client: redis.Redis) -> None:
    for key in client.scan_iter(f"{settings.metrics_cache_prefix}*", count=1000):
        client.delete(key)
    store.transport.request("POST", f"/{settings.index_prefix}*/_cache/clear", params={"request": "true"})


def measure(settings: Settings, store: SearchStore, port: int, path: str, *, cold: int,
            cached: int) -> dict[str, Any]:
    client = redis.Redis.from_url(settings.redis_url(), socket_timeout=5)
    cold_ms, cached_ms, sources = [], [], None
    for _ in range(cold):
        _clear_caches(settings, store, client)
        took, headers, body = _timed(port, path)
        if headers.get("x-cache") == "hit":
            raise RuntimeError("a cold request was answered from the cache")
        cold_ms.append(took)
        sources = orjson.loads(body).get("sources")
    for _ in range(cached):
        took, headers, _body = _timed(port, path)
        if headers.get("x-cache") != "hit":
            raise RuntimeError(f"a repeated request was not a cache hit (X-Cache {headers.get('x-cache')})")
        cached_ms.append(took)
    return {"cold": cold_ms, "cached": cached_ms, "sources": sources}


def _timed(port: int, path: str) -> tuple[float, dict[str, str], bytes]:
    started = time.perf_counter()
    status, headers, body = get(port, path)
    took = (time.perf_counter() - started) * 1000
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
    return took, headers, body


def _row(range_name: str, mode: str, values: Sequence[float], sources: Any = None) -> dict[str, Any]:
    return {"range": range_name, "mode": mode, "n": len(values),
            "p50_ms": _r(percentile(values, 50)), "p95_ms": _r(percentile(values, 95)), "sources": sources}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _iso(ms: int) -> str:
    return iso_ms(ms)


# --- the section --------------------------------------------------------------------------------------
def run(stack: Settings, out: dict, *, quick: bool, logs_dir: Path) -> None:
    per_minute = 1 if quick else 2
    samples_cold, samples_cached = (5, 10) if quick else (15, 30)
    now_ms = int(time.time() * 1000) // MINUTE * MINUTE
    launcher = Launcher(logs_dir)
    with namespace(stack, "query", topics=False) as (settings, store):
        try:
            out["dataset"] = build(settings, store, now_ms, per_minute)
            d = out["dataset"]
            out["dataset_text"] = (
                f"{d['services']} services x {d['endpoints_per_service']} endpoints; {d['raw_spans']:,} raw request "
                f"spans over the last {d['raw_hours']} h ({d['requests_per_endpoint_minute']}/endpoint/minute); "
                f"{d['rollup_documents']:,} rollup documents (1-minute for the raw period, hourly for "
                f"{d['rollup_days']} days). Cold: Redis and engine request caches cleared before each request.")
            for mode in ("rollup", "raw"):
                start_web(launcher, settings.replace(rollup_enabled=mode == "rollup"), _port(mode))
            rows, by = [], {}
            for range_name, length in RANGES.items():
                path = (f"/query/services/svc-07/metrics?start={_iso(now_ms - length)}&end={_iso(now_ms)}")
                for mode in ("rollup", "raw"):
                    if mode == "raw" and length > RAW_HOURS * HOUR:
                        rows.append({"range": range_name, "mode": "raw", "n": 0, "p50_ms": None, "p95_ms": None,
                                     "sources": f"not run: raw spans are kept for {RAW_HOURS} h in this data set"})
                        continue
                    result = measure(settings, store, _port(mode), path, cold=samples_cold,
                                     cached=samples_cached)
                    by[(range_name, mode)] = result
                    rows.append(_row(range_name, f"{mode} cold", result["cold"], result["sources"]))
                    rows.append(_row(range_name, f"{mode} cached", result["cached"]))
                    log.info("%s %s: cold p50 %.1f ms, cached p50 %.1f ms", range_name, mode,
                             percentile(result["cold"], 50), percentile(result["cached"], 50))
            out["rows"] = rows
        finally:
            launcher.stop_all()
    _figures(out, by)


def _port(mode: str) -> int:
    return 3901 if mode == "rollup" else 3902


def _figures(out: dict, by: dict[tuple[str, str], dict]) -> None:
    for range_name in RANGES:
        result = by.get((range_name, "rollup"))
        if result:
            out[f"p50_ms_{range_name}_cold"] = _r(percentile(result["cold"], 50))
            out[f"p95_ms_{range_name}_cold"] = _r(percentile(result["cold"], 95))
            out[f"p50_ms_{range_name}_cached"] = _r(percentile(result["cached"], 50))
            out[f"p95_ms_{range_name}_cached"] = _r(percentile(result["cached"], 95))
    rollup, raw = by.get(("24h", "rollup")), by.get(("24h", "raw"))
    used = bool(rollup and (rollup.get("sources") or {}).get("rollup"))
    out["rollups_used_by_route"] = used
    if rollup and raw and used:
        out["speedup_24h"] = round(percentile(raw["cold"], 50) / percentile(rollup["cold"], 50), 2)
    else:
        out["speedup_24h"] = None
        out["speedup_24h_note"] = ("not run: the metrics route did not read rollups (its answer's sources.rollup "
                                   "is null), so rollup and raw are the same query" if rollup and raw else
                                   "not run: a 24 h measurement is missing")
