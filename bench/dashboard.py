"""The dashboard in a real browser: the services page's first paint with 50 services, and a 10,080-point chart.

Data: 50 services x 2 endpoints with one request each minute for the last RAW_MINUTES (raw spans), and one
service (`svc-00`) with a request every minute for 7 days, stored as raw spans and as the one-minute rollups
beat would write from them (watermark at the last closed minute), so a 7-day chart at one-minute buckets is
10,080 points read mostly from rollups. One `web` process (the Procfile's command, QUERY_MAX_BUCKETS raised
to allow 10,080 buckets) serves the page; Debian's Chromium (tests/browser/chromium.py) opens it.

Measured in the page with the Performance API:
- services page: `first-contentful-paint` and the mark `panopticon:services-table` (the table with every
  row in the DOM), from navigation start; cold (Redis cache and engine request cache cleared) and cached;
- the 7-day chart: navigation start -> `panopticon:service-charts` (the three charts drawn), the time the
  three uPlot charts took to draw (`panopticon:charts-draw` measure), the metrics answer's download
  time (Resource Timing), and the long tasks (> 50 ms) the main thread had: the longest is how long the page
  could not answer input ("freezing"), and their sum over 50 ms is the total blocking time.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.env import namespace
from bench.procs import Launcher
from bench.query import _clear_caches, minute_rows, start_web
from bench.stats import percentile
from panopticon.processing.schemas import Decoded, decode_span
from panopticon.rollup import documents as rollup_docs
from panopticon.rollup import job
from panopticon.settings import Settings
from panopticon.storage import METRICS, TRACES, SearchStore

log = logging.getLogger("bench.dashboard")

SERVICES = 50
ENDPOINTS = ("GET /items", "POST /orders")
RAW_MINUTES = 90
WEEK_MINUTES = 7 * 24 * 60  # 10,080
MINUTE = 60_000
PORT = 3903

# Collected from the first byte on: long tasks and paints are only visible to an observer registered early.
INIT_SCRIPT = """
window.__longtasks = [];
new PerformanceObserver(list => { for (const e of list.getEntries()) window.__longtasks.push(e.duration); })
  .observe({type: 'longtask', buffered: true});
"""


def _spans(service: str, endpoints: tuple[str, ...], start_ms: int, minutes: int, seed: int,
           tag: str) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    out = []
    for i in range(minutes):
        for e, route in enumerate(endpoints):
            failed = rng.random() < 0.02
            method, path = route.split(" ", 1)
            body = {"trace_id": f"{tag}t{i}e{e}", "span_id": f"{tag}s{i}e{e}", "service_name": service,
                    "environment": "production", "name": route, "kind": "SERVER", "status": "ERROR" if failed else "OK",
                    "start_time": start_ms + i * MINUTE + rng.randrange(MINUTE),
                    "duration_ms": round((10 + 15 * e) * 2.718 ** rng.gauss(0, 0.6), 3),
                    "http": {"method": method, "route": path, "status_code": 500 if failed else 200}}
            decoded = decode_span(orjson.dumps(body), topic="bench", partition=0, offset=i, now_ms=now)
            if not isinstance(decoded, Decoded):
                raise ValueError(f"bench span refused: {decoded.reason}")
            out.append((decoded.doc_id, decoded.document))
    return out


def build(settings: Settings, store: SearchStore, now_ms: int) -> dict[str, Any]:
    started = time.monotonic()
    spans = []
    for s in range(1, SERVICES):
        spans += _spans(f"svc-{s:02d}", ENDPOINTS, now_ms - RAW_MINUTES * MINUTE, RAW_MINUTES, seed=s, tag=f"d{s}")
    week = _spans("svc-00", ENDPOINTS[:1], now_ms - WEEK_MINUTES * MINUTE, WEEK_MINUTES, seed=0, tag="d0")
    spans += week
    items = [(doc_id, orjson.dumps(doc)) for doc_id, doc in spans]
    for i in range(0, len(items), 5000):
        store.create_many(TRACES, items[i:i + 5000])
    closed = {w: rows for w, rows in minute_rows(week).items() if w + MINUTE <= now_ms}
    written = job.write_rows(store, rollup_docs.minute_tier(settings.rollup_bucket_minutes), closed, now_ms)
    # Every span written above is in the rollups that cover it (ingested_at is before this moment).
    job.set_mark(store, int(time.time() * 1000) + 1)
    store.refresh(f"{store.name(TRACES)},{settings.data_stream(METRICS)}-*")
    return {"services": SERVICES, "raw_spans": len(spans), "rollup_documents": written,
            "build_seconds": round(time.monotonic() - started, 1)}


def _services_once(context: Any, url: str) -> dict[str, float]:
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_selector("#services-table[data-ready=true]", timeout=60_000)
        timings = page.evaluate("""() => ({
            fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
            table: performance.getEntriesByName('panopticon:services-table')[0].startTime,
            rows: document.querySelectorAll('#services-table tbody tr').length})""")
        page.wait_for_selector("#services-table[data-sparks=done]", timeout=120_000)
        timings["sparks"] = page.evaluate("performance.getEntriesByName('panopticon:services-sparks')[0].startTime")
        return timings
    finally:
        page.close()


def _chart_once(context: Any, url: str) -> dict[str, Any]:
    page = context.new_page()
    try:
        page.add_init_script(INIT_SCRIPT)
        page.goto(url)
        page.wait_for_selector("main[data-ready=true]", timeout=120_000)
        page.wait_for_timeout(300)  # let the observer deliver the last long tasks
        result = page.evaluate("""() => {
            const api = performance.getEntriesByType('resource').find(e => e.name.includes('/metrics?'));
            return {charts: performance.getEntriesByName('panopticon:service-charts')[0].startTime,
                    draw: performance.getEntriesByName('panopticon:charts-draw')[0].duration,
                    api_ms: api ? api.responseEnd - api.startTime : null,
                    points: Number(document.querySelector('.charts').dataset.points),
                    longtasks: window.__longtasks};
        }""")
        # Sweep the cursor over the latency chart: a redraw of the legend and cursor on every move.
        box = page.locator("#chart-latency .u-over").bounding_box()
        before = page.evaluate("window.__longtasks.length")
        started = time.perf_counter()
        for x in range(0, int(box["width"]), 8):
            page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)
        result["hover_moves"] = int(box["width"]) // 8
        result["hover_ms"] = round((time.perf_counter() - started) * 1000, 1)
        page.wait_for_timeout(300)
        result["hover_longtasks"] = page.evaluate(f"window.__longtasks.slice({before})")
        return result
    finally:
        page.close()


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run(stack: Settings, out: dict, *, quick: bool, logs_dir: Path) -> None:
    from tests.browser import chromium

    if problem := chromium.missing():
        raise RuntimeError(problem)
    runs = 3 if quick else 5
    now_ms = int(time.time() * 1000) // MINUTE * MINUTE
    launcher = Launcher(logs_dir)
    with namespace(stack, "dashboard", topics=False) as (settings, store):
        try:
            out["dataset"] = build(settings, store, now_ms)
            web_settings = settings.replace(query_max_buckets=WEEK_MINUTES + 1)
            start_web(launcher, web_settings, PORT)
            client = redis.Redis.from_url(settings.redis_url(), socket_timeout=5)
            base = f"http://127.0.0.1:{PORT}"
            with chromium.browser_context() as context:
                cold, cached = [], []
                for _ in range(runs):
                    _clear_caches(settings, store, client)
                    cold.append(_services_once(context, f"{base}/#/services"))
                    cached.append(_services_once(context, f"{base}/#/services"))
                week = f"{base}/#/service/svc-00?start={now_ms - WEEK_MINUTES * MINUTE}&end={now_ms}&interval=1m"
                charts = []
                for _ in range(runs):
                    _clear_caches(settings, store, client)
                    charts.append(_chart_once(context, week))
            out["services_page"] = {mode: {key: _r(percentile([t[key] for t in rows], 50))
                                           for key in ("fcp", "table", "sparks")} | {"rows": rows[0]["rows"], "n": runs}
                                    for mode, rows in (("cold", cold), ("cached", cached))}
            longest = [max(c["longtasks"], default=0.0) for c in charts]
            blocking = [sum(max(0.0, d - 50) for d in c["longtasks"]) for c in charts]
            out["chart_7d"] = {
                "points": charts[0]["points"], "n": runs,
                "ready_ms_p50": _r(percentile([c["charts"] for c in charts], 50)),
                "draw_ms_p50": _r(percentile([c["draw"] for c in charts], 50)),
                "api_ms_p50": _r(percentile([c["api_ms"] for c in charts if c["api_ms"] is not None], 50)),
                "longest_task_ms_max": _r(max(longest)), "total_blocking_ms_p50": _r(percentile(blocking, 50)),
                "hover_moves": charts[0]["hover_moves"],
                "hover_ms_p50": _r(percentile([c["hover_ms"] for c in charts], 50)),
                "hover_longest_task_ms_max": _r(max(max(c["hover_longtasks"], default=0.0) for c in charts)),
            }
            out["services_first_paint_ms_cold"] = out["services_page"]["cold"]["table"]
            out["services_first_paint_ms_cached"] = out["services_page"]["cached"]["table"]
            out["chart_7d_longest_task_ms"] = out["chart_7d"]["longest_task_ms_max"]
            log.info("services page: %s; 7-day chart: %s", out["services_page"], out["chart_7d"])
        finally:
            launcher.stop_all()
