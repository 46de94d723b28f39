"""The service map: latency of `GET /query/dependencies` over 7 days for 50 services, read from rollups only.

The data set: 50 services in five layers (each calls two or three services of the next layer), ten of them also
call a database, five an external API: about 130 edges. Seven days of hourly edge documents and hourly request
statistics (the nodes' figures), built with the project's own rollup code (`edges._write`, `job.write_rows`),
so they are what beat would write; both marks are set past the data, so nothing is read raw. The range ends at a
whole hour more than ROLLUP_THRESHOLD_MINUTES ago, so the nodes' figures come from rollups too; the answer's
`sources` is recorded, and a run that read any raw part is refused.

"cold": the Redis cache and the engine's request cache are cleared before each request; "cached": the same
question again (a Redis hit).
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

from bench.env import namespace
from bench.procs import Launcher
from bench.query import measure, start_web
from bench.stats import percentile
from panopticon.model.times import iso_ms
from panopticon.rollup import edges, job
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.documents import HOURLY, Key, Row
from panopticon.rollup.edges import DATABASE, EXTERNAL, EdgeKey
from panopticon.settings import Settings
from panopticon.storage import EDGES, METRICS, TRACES, SearchStore

log = logging.getLogger("bench.dependencies")

SERVICES = 50
LAYERS = 5
DAYS = 7
HOUR = 3_600_000
PORT = 3911


def topology(seed: int = 41) -> list[EdgeKey]:
    """About 130 edges: layer i calls two or three services of layer i+1; some call a database or an API."""
    rng = random.Random(seed)
    per_layer = SERVICES // LAYERS
    layers = [[f"svc-{layer * per_layer + i:02d}" for i in range(per_layer)] for layer in range(LAYERS)]
    out = []
    for layer, names in enumerate(layers[:-1]):
        for name in names:
            for callee in rng.sample(layers[layer + 1], rng.choice((2, 3))):
                out.append(EdgeKey(name, "production", callee, "production"))
    for i in range(10):
        out.append(EdgeKey(layers[-1][i], "production", f"db-{i % 4}", "", DATABASE))
    for i in range(5):
        out.append(EdgeKey(layers[-2][i], "production", "stripe", "", EXTERNAL))
    return out


def _aggregate(rng: random.Random, calls: int, median: float) -> Aggregate:
    aggregate = Aggregate()
    for _ in range(calls):
        duration = round(median * rng.lognormvariate(0, 0.6), 3)
        aggregate.requests += 1
        aggregate.errors += rng.random() < 0.02
        aggregate.duration_sum += duration
        aggregate.duration_min = duration if aggregate.duration_min is None else min(aggregate.duration_min, duration)
        aggregate.duration_max = duration if aggregate.duration_max is None else max(aggregate.duration_max, duration)
        aggregate.histogram.add(duration)
    return aggregate


def build(settings: Settings, store: SearchStore, end_ms: int) -> dict[str, Any]:
    started = time.monotonic()
    rng = random.Random(7)
    keys = topology()
    hours = list(range(end_ms - (DAYS + 1) * 24 * HOUR, end_ms, HOUR))
    edge_docs = edges._write(store, HOURLY, {hour: {key: _aggregate(rng, 40, 5 + len(key.callee)) for key in keys}
                                             for hour in hours}, end_ms)
    services = sorted({k.caller for k in keys} | {k.callee for k in keys if k.callee_kind == "service"})
    request_rows = {hour: job.with_service_totals({Key(name, "production", "GET /work"): Row(_aggregate(rng, 40, 12))
                                                   for name in services}) for hour in hours}
    metric_docs = job.write_rows(store, HOURLY, request_rows, end_ms)
    # Everything above is "in the rollups": no span was stored after these marks.
    job.set_mark(store, end_ms + 1)
    job.set_mark(store, end_ms + 1, edges.PROGRESS_ID)
    store.refresh(f"{store.name(TRACES)},{settings.data_stream(METRICS)}-*,{settings.data_stream(EDGES)}-*")
    return {"services": len(services), "edges": len(keys), "days": DAYS + 1, "edge_documents": edge_docs,
            "metrics_documents": metric_docs, "build_seconds": round(time.monotonic() - started, 1)}


def run(stack: Settings, out: dict, *, quick: bool, logs_dir: Path) -> None:
    samples_cold, samples_cached = (3, 10) if quick else (9, 30)
    threshold_ms = stack.rollup_threshold_minutes * 60_000
    end_ms = (int(time.time() * 1000) - threshold_ms) // HOUR * HOUR - HOUR
    launcher = Launcher(logs_dir)
    with namespace(stack, "deps", topics=False) as (settings, store):
        try:
            out["dataset"] = build(settings, store, end_ms + HOUR)
            d = out["dataset"]
            out["dataset_text"] = (f"{d['services']} services, {d['edges']} edges (databases and an external API "
                                   f"included); {d['edge_documents']:,} hourly edge documents and "
                                   f"{d['metrics_documents']:,} hourly request documents over {d['days']} days.")
            start_web(launcher, settings, PORT)
            path = f"/query/dependencies?start={iso_ms(end_ms - DAYS * 24 * HOUR)}&end={iso_ms(end_ms)}"
            result = measure(settings, store, PORT, path, cold=samples_cold, cached=samples_cached)
            sources = result["sources"] or {}
            raw_parts = len(sources.get("raw") or []) + len((sources.get("nodes") or {}).get("raw") or [])
            if raw_parts or not sources.get("rollup"):
                raise RuntimeError(f"the 7-day map read raw spans: {sources}")
            out["path"] = path
            out["sources"] = sources
            out["p50_ms_7d_cold"] = round(percentile(result["cold"], 50), 1)
            out["p95_ms_7d_cold"] = round(percentile(result["cold"], 95), 1)
            out["p50_ms_7d_cached"] = round(percentile(result["cached"], 50), 1)
            out["n"] = {"cold": len(result["cold"]), "cached": len(result["cached"])}
            log.info("dependencies 7d: cold p50 %.1f ms, cached p50 %.1f ms", out["p50_ms_7d_cold"],
                     out["p50_ms_7d_cached"])
        finally:
            launcher.stop_all()
