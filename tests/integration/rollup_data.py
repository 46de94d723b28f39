"""Spans with known durations for the rollup tests, stored directly, and the exact truth to check against."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np
import orjson

from panopticon.model.histogram import Histogram
from panopticon.model.times import parse_time
from panopticon.processing.schemas import Decoded, decode_span
from panopticon.rollup.read import aggregate_key
from panopticon.storage import TRACES, SearchStore

SERVICES = {"checkout": ["POST /orders", "GET /cart", "GET /health"], "search": ["GET /q", "GET /suggest"]}
ENVIRONMENTS = ("production", "staging")
PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}


def span_message(n: int, *, service: str, environment: str, endpoint: str, start_ms: int, duration_ms: float,
                 error: bool = False, kind: str | None = "SERVER", parent: str | None = None,
                 http_status: int | None = None) -> bytes:
    body = {"trace_id": f"trace-{n}", "span_id": f"span-{n}", "parent_span_id": parent, "service_name": service,
            "environment": environment, "name": endpoint, "kind": kind, "status": "ERROR" if error else "OK",
            "start_time": start_ms, "duration_ms": duration_ms}
    if http_status is not None:
        body["http"] = {"method": endpoint.split()[0], "route": endpoint, "status_code": http_status}
    return orjson.dumps(body)


def generate(count: int, start_ms: int, end_ms: int, *, seed: int = 5, first_id: int = 0) -> list[bytes]:
    """`count` request spans spread over [start_ms, end_ms), plus one CLIENT child per ten (not requests).

    Durations are log-normal with different medians per endpoint; ~4 % are errors, half of them by
    status ERROR, half by HTTP 5xx.
    """
    rng = random.Random(seed)
    keys = [(s, e, ep) for s, eps in SERVICES.items() for e in ENVIRONMENTS for ep in eps]
    out = []
    for i in range(count):
        n = first_id + i
        service, environment, endpoint = keys[rng.randrange(len(keys))]
        start = rng.randrange(start_ms, end_ms)
        duration = round(rng.lognormvariate(3 + 0.3 * (len(endpoint) % 4), 0.8), 3)
        roll = rng.random()
        out.append(span_message(n, service=service, environment=environment, endpoint=endpoint, start_ms=start,
                                duration_ms=duration, error=roll < 0.02,
                                http_status=(503 if roll < 0.04 else 200) if i % 3 else None))
        if i % 10 == 0:
            out.append(span_message(10_000_000 + n, service=service, environment=environment, endpoint="db query",
                                    start_ms=start, duration_ms=duration / 2, kind="CLIENT", parent=f"span-{n}"))
    return out


def store_spans(store: SearchStore, messages: Iterable[bytes], now_ms: int) -> list[dict]:
    """Decode as the worker does and create in traces-apm; returns the stored documents (+ `_at_ms`)."""
    decoded = [decode_span(raw, topic="t", partition=0, offset=0, now_ms=now_ms) for raw in messages]
    bad = [d for d in decoded if not isinstance(d, Decoded)]
    assert not bad, bad[:3]
    for start in range(0, len(decoded), 2000):
        chunk = decoded[start:start + 2000]
        results = store.create_many(TRACES, [(d.doc_id, orjson.dumps(d.document)) for d in chunk])
        assert all(r.status == 201 for r in results), [r for r in results if r.status != 201][:3]
    store.refresh(store.name(TRACES))
    return [{**d.document, "_at_ms": int(parse_time(d.document["@timestamp"]))} for d in decoded]


def truth(documents: list[dict], start_ms: int, end_ms: int, interval_ms: int | None, group_by: str | None,
          keep: Callable[[dict], bool] = lambda d: True) -> dict:
    """{key: (requests, errors, durations)} of the requests in [start_ms, end_ms), keyed as the read paths key."""
    field = {"service": "service_name", "endpoint": "endpoint"}.get(group_by)
    out: dict = defaultdict(lambda: [0, 0, []])
    for d in documents:
        at = d["_at_ms"]
        if not d["is_request"] or not start_ms <= at < end_ms or not keep(d):
            continue
        bucket = None if interval_ms is None else at - at % interval_ms
        key = aggregate_key(d[field] if field else None, bucket, grouped=field is not None,
                            timed=interval_ms is not None)
        entry = out[key]
        entry[0] += 1
        entry[1] += d["is_error"]
        entry[2].append(d["duration_ms"])
    return dict(out)


def assert_matches_truth(aggregates: dict, expected: dict, label: str) -> None:
    """Counts and error rates exact; p50/p90/p95/p99 within 1 % of numpy's exact nearest-rank percentiles."""
    assert set(aggregates) == set(expected), f"{label}: keys differ: {set(aggregates) ^ set(expected)}"
    for key, (requests, errors, durations) in expected.items():
        got = aggregates[key]
        assert (got.requests, got.errors) == (requests, errors), f"{label} {key}"
        assert got.error_rate == errors / requests
        assert got.duration_min == min(durations) and got.duration_max == max(durations), f"{label} {key}"
        assert abs(got.duration_sum - sum(durations)) <= 1e-6 * max(1.0, sum(durations)), f"{label} {key}"
        ours = got.percentiles()
        for name, p in PERCENTILES.items():
            exact = float(np.percentile(durations, p, method="inverted_cdf"))
            assert abs(ours[name] - exact) <= 0.01 * exact, f"{label} {key} {name}: {ours[name]} vs {exact}"


def raw_aggregates(store: SearchStore, start_ms: int, end_ms: int, interval_ms: int | None,
                   group_field: str | None, service: str | None = None) -> dict:
    """A raw-span reference: the engine aggregation a raw path runs (same duration_bucket histogram)."""
    sub = {"histogram": {"histogram": {"field": "duration_bucket", "interval": 1, "min_doc_count": 1}},
           "errors": {"filter": {"term": {"is_error": True}}}}
    if group_field:
        sub = {"group": {"terms": {"field": group_field, "size": 1000}, "aggs": sub}}
    if interval_ms:
        aggs = {"time": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{interval_ms}ms",
                                            "min_doc_count": 1}, "aggs": sub}}
    else:
        aggs = {"time": {"filter": {"match_all": {}}, "aggs": sub}}
    filters = [{"term": {"is_request": True}},
               {"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}]
    if service:
        filters.append({"term": {"service_name": service}})
    answer = store.search(store.name(TRACES), {"size": 0, "query": {"bool": {"filter": filters}}, "aggs": aggs})
    time_buckets = answer["aggregations"]["time"]
    time_buckets = time_buckets["buckets"] if interval_ms else [dict(time_buckets, key=None)]
    out = {}
    for tb in time_buckets:
        groups = tb["group"]["buckets"] if group_field else [dict(tb, key=None)]
        for gb in groups:
            if not gb["doc_count"]:
                continue
            histogram = Histogram()
            for hb in gb["histogram"]["buckets"]:
                histogram.add_bucket(hb["key"], hb["doc_count"])
            key = aggregate_key(gb["key"], None if tb["key"] is None else int(tb["key"]),
                                grouped=group_field is not None, timed=interval_ms is not None)
            out[key] = (gb["doc_count"], gb["errors"]["doc_count"], histogram)
    return out
