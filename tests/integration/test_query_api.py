"""The query API on the real stack: numbers against truth computed here, pagination, cache, auth, errors.

Data is written with `store.create_many` from documents that the real decoders build from seeded
`panopticon.sample` messages (fast, and still the real documents); one test goes through the real
bridge and worker end to end. The truth is computed independently from the produced messages, with
numpy for percentiles (nearest rank, `inverted_cdf`), never from our own aggregation code.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import numpy as np
import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from panopticon import sample
from panopticon.api import create_app
from panopticon.api.dashboard import STATIC
from panopticon.kafka import ensure_topics
from panopticon.processing.schemas import Decoded, decode_log, decode_span
from panopticon.settings import Settings
from panopticon.storage import LOGS, TRACES, SearchStore
from tests.integration.traffic import wait_for_count

MINUTE = 60_000
TOLERANCE = 0.01  # the bound; the histogram's own bound is 0.5 %


# --- the data and its truth ---------------------------------------------------------------------------------


def _epoch_ms(value: int | float | str) -> int:
    """A message's time as the stored documents keep it: whole milliseconds."""
    if isinstance(value, int | float):
        return int(value)
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def _get(body: dict, snake: str, camel: str):
    return body.get(snake, body.get(camel))


@dataclass
class Request:
    """A request span, derived here from the message by MISSION.md's definitions (not by our code)."""

    service: str
    environment: str
    endpoint: str
    start_ms: int
    duration_ms: float
    error: bool
    trace_id: str
    span_id: str


@dataclass
class Sample:
    messages: list[sample.SampleMessage]
    start_ms: int
    end_ms: int

    @property
    def spans(self) -> list[dict]:
        return [m.body for m in self.messages if m.kind == "span"]

    @property
    def logs(self) -> list[dict]:
        return [m.body for m in self.messages if m.kind == "log"]

    def requests(self) -> list[Request]:
        out = []
        for body in self.spans:
            kind, parent = body.get("kind"), _get(body, "parent_span_id", "parentSpanId")
            if not (kind == "SERVER" or (kind is None and parent is None)):
                continue
            http = body.get("http") or {}
            status_code = http.get("status_code") or 0
            out.append(Request(
                service=_get(body, "service_name", "serviceName"), environment=body["environment"],
                endpoint=http.get("route") or body["name"], start_ms=_epoch_ms(_get(body, "start_time", "startTime")),
                duration_ms=float(_get(body, "duration_ms", "durationMs")),
                error=body["status"] == "ERROR" or status_code >= 500,
                trace_id=_get(body, "trace_id", "traceId"), span_id=_get(body, "span_id", "spanId")))
        return out


def make_sample(count: int, seed: int, *, minutes_ago: int = 12, spread_minutes: int = 10) -> Sample:
    now = int(time.time() * 1000)
    start = now - minutes_ago * MINUTE
    messages = list(sample.generate(count, seed=seed, start_ms=start, spread_ms=spread_minutes * MINUTE))
    return Sample(messages, start, now)


def write_sample(store: SearchStore, data: Sample, *, skip_span_ids: frozenset[str] = frozenset()) -> None:
    """Decode every message with the real decoders and store the documents."""
    now = int(time.time() * 1000)
    spans, logs = [], []
    for offset, message in enumerate(data.messages):
        raw = message.encode()
        if message.kind == "span":
            if _get(message.body, "span_id", "spanId") in skip_span_ids:
                continue
            decoded = decode_span(raw, topic="spans", partition=0, offset=offset, now_ms=now)
            target = spans
        else:
            decoded = decode_log(raw, topic="logs", partition=0, offset=offset, now_ms=now)
            target = logs
        assert isinstance(decoded, Decoded), decoded
        target.append((decoded.doc_id, orjson.dumps(decoded.document)))
    for stream, items in ((TRACES, spans), (LOGS, logs)):
        for start in range(0, len(items), 1000):
            results = store.create_many(stream, items[start:start + 1000])
            assert all(item.status == 201 for item in results), [r for r in results if r.status != 201][:3]
        store.refresh(store.name(stream))


def exact_percentiles(durations: list[float]) -> dict[str, float]:
    values = np.array(durations)
    return {f"p{q}": float(np.percentile(values, q, method="inverted_cdf")) for q in (50, 90, 95)}


def assert_stats(row: dict, requests: list[Request], where: str) -> None:
    errors = sum(r.error for r in requests)
    assert row["requests"] == len(requests), where
    assert row["errors"] == errors, where
    if not requests:
        assert row["error_rate"] is None and row["p95"] is None, where
        return
    assert row["error_rate"] == errors / len(requests), where
    for name, exact in exact_percentiles([r.duration_ms for r in requests]).items():
        assert abs(row[name] - exact) <= TOLERANCE * exact, f"{where} {name}: {row[name]} vs exact {exact}"


def iso_ms(text: str) -> int:
    return _epoch_ms(text)


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture
def data(store: SearchStore) -> Sample:
    written = make_sample(150, seed=4242)
    write_sample(store, written)
    return written


@pytest.fixture
def app(namespace: Settings, store: SearchStore) -> Flask:
    return create_app(namespace)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _range(data: Sample) -> str:
    return f"start={data.start_ms - MINUTE}&end={data.end_ms + MINUTE}"


def _ok(client: FlaskClient, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, (url, response.get_json())
    return response.get_json()


def _walk(client: FlaskClient, url: str) -> tuple[list[dict], list[int]]:
    """Every item of a cursor-paginated search, and the `total` every page reported."""
    items, totals, cursor = [], [], None
    while True:
        page = _ok(client, url + (f"&cursor={cursor}" if cursor else ""))
        items += page["items"]
        totals.append(page["total"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items, totals


# --- numbers ------------------------------------------------------------------------------------------------


def test_metrics_series_match_truth(client: FlaskClient, data: Sample) -> None:
    answer = _ok(client, f"/query/services/gateway/metrics?{_range(data)}&interval=1m")
    start, end = iso_ms(answer["from"]), iso_ms(answer["to"])
    assert start % MINUTE == 0 and end % MINUTE == 0 and answer["interval_ms"] == MINUTE
    assert answer["sources"]["raw"] == [{"from": answer["from"], "to": answer["to"]}]
    assert answer["sources"]["rollup"] is None
    requests = [r for r in data.requests() if r.service == "gateway" and start <= r.start_ms < end]
    by_minute: dict[int, list[Request]] = defaultdict(list)
    for r in requests:
        by_minute[r.start_ms - r.start_ms % MINUTE].append(r)
    assert [b["time_ms"] for b in answer["buckets"]] == list(range(start, end, MINUTE))
    for bucket in answer["buckets"]:
        assert_stats(bucket, by_minute.get(bucket["time_ms"], []), f"bucket {bucket['time']}")
    assert_stats(answer["summary"], requests, "summary")
    assert answer["summary"]["requests"] > 100


def test_metrics_filters_by_environment_and_endpoint(client: FlaskClient, data: Sample) -> None:
    answer = _ok(client, f"/query/services/gateway/metrics?{_range(data)}&interval=5m&environment=staging"
                         f"&endpoint={quote('/api/checkout', safe='')}")
    start, end = iso_ms(answer["from"]), iso_ms(answer["to"])
    requests = [r for r in data.requests() if r.service == "gateway" and r.environment == "staging"
                and r.endpoint == "/api/checkout" and start <= r.start_ms < end]
    assert requests
    assert_stats(answer["summary"], requests, "staging checkout")


def test_services_and_endpoints_agree_with_truth(client: FlaskClient, data: Sample) -> None:
    services = _ok(client, f"/query/services?{_range(data)}&sort=requests&order=desc")
    start, end = iso_ms(services["from"]), iso_ms(services["to"])
    requests = [r for r in data.requests() if start <= r.start_ms < end]
    names = {r.service for r in requests}
    assert {row["service_name"] for row in services["items"]} == names
    assert services["total"] == len(names)
    counts = [row["requests"] for row in services["items"]]
    assert counts == sorted(counts, reverse=True)
    for row in services["items"]:
        assert_stats(row, [r for r in requests if r.service == row["service_name"]], row["service_name"])

    endpoints = _ok(client, f"/query/services/catalog/endpoints?{_range(data)}&sort=p95&order=asc")
    catalog = [r for r in requests if r.service == "catalog"]
    assert {row["endpoint"] for row in endpoints["items"]} == {r.endpoint for r in catalog}
    p95s = [row["p95"] for row in endpoints["items"]]
    assert p95s == sorted(p95s)
    for row in endpoints["items"]:
        assert_stats(row, [r for r in catalog if r.endpoint == row["endpoint"]], row["endpoint"])

    # The same requests counted by three routes: the totals agree across pages.
    series = _ok(client, f"/query/services/catalog/metrics?start={start}&end={end}&interval=1m")
    catalog_row = next(row for row in services["items"] if row["service_name"] == "catalog")
    assert series["summary"]["requests"] == catalog_row["requests"] == sum(r["requests"] for r in endpoints["items"])


def test_services_by_environment_has_one_row_per_service_and_environment(client: FlaskClient,
                                                                         data: Sample) -> None:
    split = _ok(client, f"/query/services?{_range(data)}&by_environment=true&sort=name&order=asc")
    start, end = iso_ms(split["from"]), iso_ms(split["to"])
    requests = [r for r in data.requests() if start <= r.start_ms < end]
    pairs = sorted({(r.service, r.environment) for r in requests})
    assert [(row["service_name"], row["environment"]) for row in split["items"]] == pairs
    assert split["total"] == len(pairs) and {e for _, e in pairs} == {"production", "staging"}
    for row in split["items"]:
        assert_stats(row, [r for r in requests if (r.service, r.environment) == (row["service_name"],
                                                                                  row["environment"])], str(row))
        alone = _ok(client, f"/query/services?start={start}&end={end}&environment={row['environment']}"
                            f"&search={row['service_name']}")
        assert [{**r, "environment": row["environment"]} for r in alone["items"]
                if r["service_name"] == row["service_name"]] == [row]
    assert "environment" not in _ok(client, f"/query/services?{_range(data)}")["items"][0]


def test_search_limit_and_sort_on_services(client: FlaskClient, data: Sample) -> None:
    found = _ok(client, f"/query/services?{_range(data)}&search=ATALO")
    assert [row["service_name"] for row in found["items"]] == ["catalog"]
    # Wildcard characters in the search are taken literally.
    assert _ok(client, f"/query/services?{_range(data)}&search=*")["items"] == []
    assert _ok(client, f"/query/services?{_range(data)}&search=c%3Fta")["items"] == []
    limited = _ok(client, f"/query/services?{_range(data)}&sort=name&order=asc&limit=2")
    names = sorted({r.service for r in data.requests()})
    assert [row["service_name"] for row in limited["items"]] == names[:2]
    assert limited["total"] == len(names)


def test_endpoint_traces_lists_recent_errors_and_slowest(client: FlaskClient, data: Sample) -> None:
    answer = _ok(client, f"/query/services/gateway/endpoints//api/products/traces?{_range(data)}&limit=5")
    truth = [r for r in data.requests() if r.service == "gateway" and r.endpoint == "/api/products"]
    slowest = sorted(truth, key=lambda r: r.duration_ms, reverse=True)[:5]
    assert [s["span_id"] for s in answer["slow"]] == [r.span_id for r in slowest]
    errors = sorted((r for r in truth if r.error), key=lambda r: r.start_ms, reverse=True)
    assert errors, "the sample has failed requests on this endpoint"
    assert {s["span_id"] for s in answer["errors"]} <= {r.span_id for r in errors}
    assert len(answer["errors"]) == min(5, len(errors))
    assert all(s["is_error"] and s["endpoint"] == "/api/products" for s in answer["errors"])
    # URL-encoded slashes reach the same endpoint.
    encoded = _ok(client, f"/query/services/gateway/endpoints/{quote('/api/products', safe='')}/traces?"
                          f"{_range(data)}&limit=5")
    assert encoded["slow"] == answer["slow"]


# --- traces -------------------------------------------------------------------------------------------------


def _trace_truth(data: Sample, trace_id: str) -> tuple[list[dict], list[dict]]:
    spans = [b for b in data.spans if _get(b, "trace_id", "traceId") == trace_id]
    logs = [b for b in data.logs if b["trace_id"] == trace_id]
    return spans, logs


def _biggest_trace(data: Sample) -> str:
    counts: dict[str, int] = defaultdict(int)
    for body in data.spans:
        counts[_get(body, "trace_id", "traceId")] += 1
    return max(counts, key=counts.get)


def test_trace_has_every_span_and_log_as_a_tree(client: FlaskClient, data: Sample) -> None:
    trace_id = _biggest_trace(data)
    spans, logs = _trace_truth(data, trace_id)
    answer = _ok(client, f"/query/traces/{trace_id}")
    assert sorted(s["span_id"] for s in answer["spans"]) == sorted(_get(b, "span_id", "spanId") for b in spans)
    assert sorted(log["event_id"] for log in answer["logs"]) == sorted(b["event_id"] for b in logs)
    position = {s["span_id"]: i for i, s in enumerate(answer["spans"])}
    for span in answer["spans"]:
        if span["parent_span_id"] is not None:
            assert position[span["parent_span_id"]] < position[span["span_id"]], "parent before child"
            parent = answer["spans"][position[span["parent_span_id"]]]
            assert span["depth"] == parent["depth"] + 1
    children: dict[str, list[dict]] = defaultdict(list)
    for span in answer["spans"]:
        children[span["parent_span_id"]].append(span)
    for siblings in children.values():
        assert [s["start_time"] for s in siblings] == sorted(s["start_time"] for s in siblings)
    summary = answer["summary"]
    assert summary["span_count"] == len(spans) and summary["log_count"] == len(logs)
    assert summary["services"] == sorted({_get(b, "service_name", "serviceName") for b in spans})
    assert summary["error_count"] == sum(1 for b in spans if b["status"] == "ERROR"
                                         or (b.get("http") or {}).get("status_code", 0) >= 500)
    assert summary["missing_parents"] == [] and answer["truncated"] is False
    starts = [_epoch_ms(_get(b, "start_time", "startTime")) for b in spans]
    assert iso_ms(summary["start_time"]) == min(starts)

    only = _ok(client, f"/query/traces/{trace_id}?service=gateway")
    assert {s["service_name"] for s in only["spans"]} == {"gateway"}
    assert client.get("/query/traces/no-such-trace").status_code == 404
    assert client.get("/query/traces/no-such-trace").get_json()["error"]["code"] == "not_found"


def test_trace_with_missing_parent_keeps_the_orphans(namespace: Settings, store: SearchStore) -> None:
    data = make_sample(20, seed=99)
    trace_id = _biggest_trace(data)
    spans, _ = _trace_truth(data, trace_id)
    root = next(b for b in spans if _get(b, "parent_span_id", "parentSpanId") is None)
    root_id = _get(root, "span_id", "spanId")
    write_sample(store, data, skip_span_ids=frozenset({root_id}))
    answer = _ok(create_app(namespace).test_client(), f"/query/traces/{trace_id}")
    orphans = sorted(_get(b, "span_id", "spanId") for b in spans
                     if _get(b, "parent_span_id", "parentSpanId") == root_id)
    assert answer["summary"]["missing_parents"] == orphans
    assert len(answer["spans"]) == len(spans) - 1
    assert all(s["depth"] == 0 for s in answer["spans"] if s["span_id"] in orphans)


# --- search and pagination ----------------------------------------------------------------------------------


def test_span_pagination_returns_each_span_once(client: FlaskClient, data: Sample) -> None:
    items, totals = _walk(client, f"/query/spans?{_range(data)}&limit=37&sort=duration_ms&order=asc")
    ids = [s["id"] for s in items]
    assert len(ids) == len(set(ids)) == len(data.spans) == totals[0]
    assert set(totals) == {len(data.spans)}
    durations = [s["duration_ms"] for s in items]
    assert durations == sorted(durations)


def test_span_filters(client: FlaskClient, data: Sample) -> None:
    base = f"/query/spans?{_range(data)}&limit=500"
    clients = _ok(client, f"{base}&kind=client&service=checkout")
    truth = [b for b in data.spans if b["kind"] == "CLIENT" and _get(b, "service_name", "serviceName") == "checkout"]
    assert clients["total"] == len(truth) and all(s["kind"] == "CLIENT" for s in clients["items"])
    slow = _ok(client, f"{base}&min_duration_ms=100&max_duration_ms=200")
    assert slow["total"] == sum(1 for b in data.spans if 100 <= _get(b, "duration_ms", "durationMs") <= 200)
    errors = _ok(client, f"{base}&error=true")
    assert errors["total"] == sum(1 for b in data.spans if b["status"] == "ERROR"
                                  or (b.get("http") or {}).get("status_code", 0) >= 500)
    trace_id = _biggest_trace(data)
    in_trace = _ok(client, f"{base}&trace_id={trace_id}")
    assert in_trace["total"] == len(_trace_truth(data, trace_id)[0])


def test_service_traces_are_root_spans_paginated(client: FlaskClient, data: Sample) -> None:
    items, _ = _walk(client, f"/query/services/gateway/traces?{_range(data)}&limit=20&sort=start_time")
    roots = [b for b in data.spans if _get(b, "parent_span_id", "parentSpanId") is None]
    assert sorted(s["trace_id"] for s in items) == sorted(_get(b, "trace_id", "traceId") for b in roots)
    starts = [s["start_time"] for s in items]
    assert starts == sorted(starts, reverse=True)
    failed = _ok(client, f"/query/services/gateway/traces?{_range(data)}&limit=500&status=error")
    assert failed["total"] == sum(1 for b in roots if b["status"] == "ERROR")


def test_log_search_pagination_level_and_text(client: FlaskClient, data: Sample) -> None:
    items, totals = _walk(client, f"/query/logs?{_range(data)}&limit=50")
    assert sorted(log["event_id"] for log in items) == sorted(b["event_id"] for b in data.logs)
    assert len({log["id"] for log in items}) == len(items) == totals[0]
    times = [log["timestamp"] for log in items]
    assert times == sorted(times, reverse=True)
    errors = _ok(client, f"/query/logs?{_range(data)}&level=error,fatal&limit=500")
    assert errors["total"] == sum(1 for b in data.logs if b["level"] == "ERROR")
    text = _ok(client, f"/query/logs?{_range(data)}&q=upstream%20failed&limit=500")
    assert text["total"] == sum(1 for b in data.logs if "upstream call failed" in b["message"])
    # Query syntax in the text is just text: nothing matches, nothing breaks.
    assert _ok(client, f"/query/logs?{_range(data)}&q={quote('message:* OR /.*/')}")["total"] == 0


def test_default_range_is_the_last_15_minutes(client: FlaskClient, store: SearchStore) -> None:
    old = make_sample(10, seed=5, minutes_ago=40, spread_minutes=5)
    recent = make_sample(10, seed=6, minutes_ago=8, spread_minutes=5)
    write_sample(store, old)
    write_sample(store, recent)
    assert _ok(client, "/query/logs?limit=500")["total"] == len(recent.logs)
    assert _ok(client, "/query/spans?limit=500")["total"] == len(recent.spans)


# --- cache --------------------------------------------------------------------------------------------------


def test_second_metrics_request_is_a_cache_hit(app: Flask, data: Sample) -> None:
    client = app.test_client()
    # Bounds inside their minutes, so moving them by a few ms (a dashboard refresh) keeps the rounded question.
    start = (data.start_ms // MINUTE - 1) * MINUTE + 10_000
    end = (data.end_ms // MINUTE + 2) * MINUTE - 30_000
    url = f"/query/services/gateway/metrics?start={start}&end={end}&interval=1m"
    first, second = client.get(url), client.get(url)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert second.data == first.data
    cache = app.extensions["panopticon.query"].cache
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    later = client.get(f"/query/services/gateway/metrics?start={start + 5}&end={end + 5}&interval=1m")
    assert later.headers["X-Cache"] == "hit" and later.data == first.data


def test_without_redis_the_cache_is_off(namespace: Settings, store: SearchStore, data: Sample) -> None:
    client = create_app(namespace.replace(redis_host=None)).test_client()
    url = f"/query/services/gateway/metrics?{_range(data)}&interval=1m"
    responses = [client.get(url), client.get(url)]
    assert [r.headers["X-Cache"] for r in responses] == ["off", "off"]
    assert responses[0].data == responses[1].data


# --- contract and safety ------------------------------------------------------------------------------------

PATH_SAMPLES = {"traceId": "abc", "serviceName": "gateway", "endpointName": "/api/products",
                "name": "swagger-ui.css", "asset": "js/main.js", "service": "gateway", "traceID": "abc",
                "file": "traces/abc", "fingerprint": "0123456789abcdef"}
# The dashboard's page shell and static files hold no data: they load without a token, so the page can ask for one;
# so do the Zipkin UI's (its API calls need the token).
NO_TOKEN = ("health.healthz", "health.readyz", "dashboard.index", "dashboard.asset", "lens.index", "lens.config",
            "lens.asset")


def _every_route(app: Flask) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", PATH_SAMPLES[name])
            path = next((path.replace(f"<{c}:{name}>", PATH_SAMPLES[name]) for c in ("endpoint", "path")
                         if f"<{c}:{name}>" in path), path)
        routes.append((rule.endpoint, path))
    return routes


def test_every_route_needs_a_token_when_tokens_are_set(namespace: Settings, store: SearchStore) -> None:
    app = create_app(namespace.replace(api_auth_tokens=("s3cret", "other")))
    client = app.test_client()
    routes = _every_route(app)
    assert len(routes) >= 13
    for endpoint, path in routes:
        response = client.get(path)
        if endpoint in NO_TOKEN:
            assert response.status_code == 200, path
            if endpoint == "dashboard.asset":  # a file of the package, whatever is stored
                assert response.data == (STATIC / PATH_SAMPLES["asset"]).read_bytes()
            assert b"gateway" not in response.data, path
            response.close()
            continue
        assert response.status_code == 401, path
        if path.startswith(("/api/v2/", "/zipkin/api/v2/")):  # each compatible API in its own error shape
            assert response.mimetype == "text/plain" and b"bearer token" in response.data, path
        elif path.startswith("/api/"):
            assert response.get_json()["errors"][0]["code"] == 401, path
        else:
            assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
    assert client.get("/query/services", headers={"Authorization": "Bearer other"}).status_code == 200
    assert client.get("/docs", headers={"Authorization": "bearer s3cret"}).status_code == 200


def test_openapi_lists_every_route_and_docs_render(client: FlaskClient, app: Flask) -> None:
    spec = _ok(client, "/openapi.json")
    documented = set(spec["paths"])
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in documented, path
    spans = spec["paths"]["/query/spans"]["get"]
    assert {p["name"] for p in spans["parameters"]} >= {"service", "kind", "status", "min_duration_ms", "cursor"}
    page = client.get("/docs")
    assert page.status_code == 200 and b"swagger-ui-bundle.js" in page.data and b"/openapi.json" in page.data
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.data) > 1000, asset
        response.close()
    assert b"cdn" not in page.data.lower() and b"http" not in page.data.lower()


BAD = [
    ("/query/spans?start=yesterday", "start", "ISO 8601"),
    ("/query/spans?start=now&end=1h", "start", "before end"),
    ("/query/spans?start=40d", "start", "31 days"),
    ("/query/spans?start=1700000000", "start", "epoch milliseconds"),
    ("/query/spans?limit=0", "limit", "at least 1"),
    ("/query/spans?limit=100000", "limit", "QUERY_MAX_PAGE_SIZE"),
    ("/query/spans?limit=ten", "limit", "integer"),
    ("/query/spans?kind=BOGUS", "kind", "SERVER"),
    ("/query/spans?sort=trace_id", "sort", "start_time"),
    ("/query/spans?bogus=1", "bogus", "unknown parameter"),
    ("/query/spans?cursor=notacursor", "cursor", "cursor"),
    ("/query/spans?min_duration_ms=abc", "min_duration_ms", "number"),
    ("/query/spans?min_duration_ms=5&max_duration_ms=1", "min_duration_ms", "greater"),
    ("/query/spans?error=maybe", "error", "boolean"),
    ("/query/logs?level=LOUD", "level", "ERROR"),
    ("/query/logs?sort=duration_ms&cursor=x", "sort", "timestamp"),
    ("/query/services/gateway/metrics?interval=1m&start=2d", "interval", "QUERY_MAX_BUCKETS"),
    ("/query/services/gateway/metrics?interval=fast", "interval", "duration"),
    ("/query/services/gateway/metrics?interval=500ms", "interval", "at least 1s"),
    ("/query/services?sort=size", "sort", "requests"),
    ("/query/traces/has%20space", "traceId", "printable"),
    ("/query/traces/a:b", "traceId", "printable"),
    # Abusive, but well formed: bounded work or a 400 naming the parameter, before any engine call.
    ("/query/services/gateway/metrics?start=31d&interval=1862s", "interval", "multiple of 1m"),
    ("/query/services/gateway/metrics?start=31d&interval=31d", "start", "widened"),
    ("/query/services?start=31d", "start", "widened"),
    ("/query/spans?start=1000000w&end=999999w", "end", "2000-01-01"),
    ("/query/logs?start=3000w", "start", "2000-01-01"),
]


@pytest.mark.parametrize(("url", "parameter", "says"), BAD, ids=[f"{p}-{i}" for i, (_, p, _) in enumerate(BAD)])
def test_bad_parameters_are_400_before_any_engine_call(stack: Settings, url: str, parameter: str,
                                                       says: str) -> None:
    # The engine is unreachable: a 400 (not a 503) proves the checks ran before any engine call.
    client = create_app(stack.replace(elasticsearch_node="http://127.0.0.1:9", search_engine="auto")).test_client()
    response = client.get(url)
    assert response.status_code == 400, (url, response.get_json())
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["parameter"] == parameter
    assert says.lower() in error["message"].lower(), error


def test_unreachable_engine_is_503_with_retry_after(stack: Settings) -> None:
    client = create_app(stack.replace(elasticsearch_node="http://127.0.0.1:9")).test_client()
    for url in ("/query/services", "/query/spans", "/query/traces/abc", "/query/services/x/metrics"):
        response = client.get(url)
        assert response.status_code == 503, url
        assert response.get_json()["error"]["code"] == "engine_unavailable"
        assert int(response.headers["Retry-After"]) > 0
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["search"] is False
    assert client.get("/healthz").status_code == 200


def test_request_ids_and_cors(namespace: Settings, store: SearchStore) -> None:
    client = create_app(namespace.replace(cors_origins=("https://dash.example",))).test_client()
    response = client.get("/healthz", headers={"X-Request-Id": "abc-123", "Origin": "https://dash.example"})
    assert response.headers["X-Request-Id"] == "abc-123"
    assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    assert len(client.get("/healthz").headers["X-Request-Id"]) == 32
    other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options("/query/services", headers={
        "Origin": "https://dash.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_schemathesis_finds_no_5xx_and_answers_match_the_schema(app: Flask, data: Sample) -> None:
    """Valid and invalid requests generated from /openapi.json: never a 5xx, every answer as documented."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12  # every route but /openapi.json, which schemathesis leaves out
    statuses: dict[str, set[int]] = defaultdict(set)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=30, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case) -> None:
                response = case.call_and_validate(checks=checks)
                statuses[case.operation.label].add(response.status_code)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to make invalid: a route without parameters
    assert all(200 in statuses[label] for label in ("GET /query/spans", "GET /query/logs", "GET /query/services"))


# --- end to end ---------------------------------------------------------------------------------------------


def test_end_to_end_through_bridge_and_worker(namespace: Settings, store: SearchStore, processes) -> None:
    data = make_sample(60, seed=777, minutes_ago=6, spread_minutes=4)
    ensure_topics(namespace, [namespace.kafka_apm_log_topic, namespace.kafka_apm_span_topic,
                              namespace.kafka_apm_log_error_topic, namespace.kafka_apm_dlq_topic])
    sample.send(namespace, iter(data.messages))
    processes.start("worker", namespace)
    bridge = processes.start("bridge", namespace)
    assert wait_for_count(store, len(data.messages), timeout=180) == len(data.messages), bridge.log_tail()
    client = create_app(namespace).test_client()
    answer = _ok(client, f"/query/services/gateway/metrics?{_range(data)}&interval=1m")
    start, end = iso_ms(answer["from"]), iso_ms(answer["to"])
    assert_stats(answer["summary"], [r for r in data.requests() if r.service == "gateway"
                                     and start <= r.start_ms < end], "end to end")
    trace_id = _biggest_trace(data)
    spans, logs = _trace_truth(data, trace_id)
    trace = _ok(client, f"/query/traces/{trace_id}")
    assert (len(trace["spans"]), len(trace["logs"])) == (len(spans), len(logs))
