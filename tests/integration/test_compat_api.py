"""Contract tests: exactly the requests that Grafana's Jaeger and Zipkin data sources, the Jaeger UI and the Zipkin
UI (Lens) make, against sample traffic that went through the real pipeline (Kafka -> bridge -> worker -> engine).

Where each request comes from (read in their source):
* Grafana's Jaeger data source: grafana/grafana `pkg/tsdb/jaeger/client.go` (backend: `/api/services`,
  `/api/services/{s}/operations`, `/api/traces` with `start` / `end` in microseconds (`UnixMicro`), `tags` as a
  JSON map made from logfmt, `limit` only when > 0; trace by id `/api/traces/{id}` with `start` / `end` in
  MILLISECONDS (`UnixMilli`) when `traceIdTimeParams` is on; `/api/dependencies?endTs=&lookback=` in ms) and
  `public/app/plugins/datasource/jaeger/datasource.ts` (frontend: the same search plus `lookback=custom`; the trace
  is `data[0]`; the dependency graph's `endTs` / `lookback` in ms).
* Grafana's Zipkin data source: `public/app/plugins/datasource/zipkin/QueryField.tsx` (`services`,
  `spans?serviceName=`, `traces?serviceName=&spanName=` without times, each trace's root span (no `parentId`) read
  for its label) and `datasource.ts` (`/api/v2/trace/{id}`).
* The Jaeger UI: jaegertracing/jaeger-ui `packages/jaeger-ui/src/api/jaeger.js` (`services`,
  `services/{s}/operations`, `operations?service=&spanKind=server`, `traces/{id}`, `dependencies?endTs=&lookback=`
  with a one-week lookback) and `components/SearchTracePage/SearchForm.jsx` `submitForm` (`traces?service=&limit=20
  &lookback=1h&start=&end=` in microseconds, empty `minDuration` / `maxDuration` sent as bare keys).
* The Jaeger query API itself: jaegertracing/jaeger `cmd/query/app/http_handler.go` (the `{data, total, limit,
  offset, errors}` envelope, 404 for an unknown trace) and `query_parser.go` (units, `tags` JSON, 400 for a missing
  service).
* Lens: the zipkin-lens 3.6.1 bundle inside zipkin-server's exec jar (`/zipkin/config.json`, `/zipkin/api/v2/`
  `services`, `remoteServices?serviceName=`, `spans?serviceName=`, `autocompleteKeys`, `autocompleteValues?key=`,
  `traces?serviceName=&annotationQuery=&endTs=&lookback=&limit=`, `trace/{id}`, `dependencies?endTs=&lookback=`),
  and openzipkin/zipkin-api `zipkin2-api.yaml` for the shapes and units.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from panopticon import sample
from panopticon.api.app import create_app
from panopticon.kafka import ensure_topics
from panopticon.model.times import iso_to_ms
from panopticon.settings import Settings
from panopticon.storage import open_store
from tests.integration.conftest import ROOT, own_namespace
from tests.integration.processes import ProcessGroup
from tests.integration.traffic import wait_for_count

MINUTE = 60_000


@dataclass
class Traffic:
    settings: Settings
    client: FlaskClient
    messages: list[sample.SampleMessage]
    start_ms: int
    end_ms: int

    @property
    def spans(self) -> list[dict]:
        return [_snake(m.body) for m in self.messages if m.kind == "span"]

    def traces(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = defaultdict(list)
        for span in self.spans:
            out[span["trace_id"]].append(span)
        return out


def _snake(body: dict) -> dict:
    """A sample span in one spelling (half of them are camelCase), start as epoch ms."""
    get = lambda snake, camel: body.get(snake, body.get(camel))  # noqa: E731
    start = get("start_time", "startTime")
    return {"trace_id": get("trace_id", "traceId"), "span_id": get("span_id", "spanId"),
            "parent_span_id": get("parent_span_id", "parentSpanId"), "service_name": get("service_name", "serviceName"),
            "environment": body["environment"], "name": body["name"], "kind": body["kind"], "status": body["status"],
            "start_ms": int(start) if isinstance(start, int | float) else iso_to_ms(start),
            "duration_ms": get("duration_ms", "durationMs"), "http": body.get("http"),
            "attributes": body.get("attributes") or {}}


@pytest.fixture(scope="module")
def traffic(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    with contextmanager(own_namespace)(stack) as settings:
        settings = settings.replace(redis_host=None)
        ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                                 settings.kafka_apm_log_error_topic, settings.kafka_apm_dlq_topic])
        store = open_store(settings, setup=True)
        processes = ProcessGroup(ROOT, tmp_path_factory.mktemp("compat-processes"))
        try:
            processes.start("worker", settings)
            bridge = processes.start("bridge", settings)
            now = int(time.time() * 1000)
            messages = list(sample.generate(150, seed=1717, start_ms=now - 12 * MINUTE, spread_ms=10 * MINUTE))
            sample.send(settings, iter(messages))
            stored = wait_for_count(store, len(messages), timeout=180)
            assert stored == len(messages), bridge.log_tail()
            yield Traffic(settings, create_app(settings).test_client(), messages, now - 15 * MINUTE, now + MINUTE)
        finally:
            processes.stop_all()
            store.close()


def _json(client: FlaskClient, url: str, status: int = 200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:500])
    return response.get_json()


def _expected_links(traffic: Traffic) -> dict[tuple[str, str], tuple[int, int]]:
    """{(caller, callee): (calls, errors)} by the issue's rules, from the produced messages."""
    spans = traffic.spans
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    answered = defaultdict(set)
    for s in spans:
        if s["parent_span_id"]:
            answered[(s["trace_id"], s["parent_span_id"])].add(s["service_name"])
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for s in spans:
        parent = by_id.get((s["trace_id"], s["parent_span_id"]))
        if parent and parent["service_name"] != s["service_name"]:
            out[(parent["service_name"], s["service_name"])][0] += 1
            out[(parent["service_name"], s["service_name"])][1] += s["status"] == "ERROR"
        attributes = s["attributes"]
        peer = attributes.get("peer.service") or attributes.get("db.system") or attributes.get("messaging.system")
        if s["kind"] in ("CLIENT", "PRODUCER") and peer and not answered[(s["trace_id"], s["span_id"])] - {
                s["service_name"]}:
            out[(s["service_name"], peer)][0] += 1
            out[(s["service_name"], peer)][1] += s["status"] == "ERROR"
    return {key: (calls, errors) for key, (calls, errors) in out.items()}


def _biggest_trace(traffic: Traffic) -> tuple[str, list[dict]]:
    return max(traffic.traces().items(), key=lambda item: (len(item[1]), item[0]))


# --- Grafana's Jaeger data source, and the Jaeger UI --------------------------------------------------------
def test_jaeger_services_and_operations_as_grafana_and_the_jaeger_ui_ask(traffic: Traffic) -> None:
    services = _json(traffic.client, "/api/services")
    assert set(services["data"]) == {s["service_name"] for s in traffic.spans}
    assert services["total"] == len(services["data"]) and services["errors"] is None
    gateway = {s["name"] for s in traffic.spans if s["service_name"] == "gateway"}
    assert set(_json(traffic.client, "/api/services/gateway/operations")["data"]) == gateway
    server = _json(traffic.client, "/api/operations?service=gateway&spanKind=server")["data"]
    assert {(o["name"], o["spanKind"]) for o in server} == {
        (s["name"], "server") for s in traffic.spans if s["service_name"] == "gateway" and s["kind"] == "SERVER"}
    missing = _json(traffic.client, "/api/operations", 400)
    assert missing["data"] is None and missing["errors"][0]["code"] == 400 and "service" in missing["errors"][0]["msg"]


def test_grafana_jaeger_search_with_json_tags_and_durations_in_microseconds(traffic: Traffic) -> None:
    start_us, end_us = traffic.start_ms * 1000, traffic.end_ms * 1000
    tags = quote(json.dumps({"http.status_code": "200", "http.method": "GET"}))
    url = (f"/api/traces?service=gateway&tags={tags}&minDuration=20ms&maxDuration=2s&limit=20&start={start_us}"
           f"&end={end_us}&lookback=custom")
    found = _json(traffic.client, url)["data"]

    def meets(span: dict) -> bool:
        return (span["service_name"] == "gateway" and (span["http"] or {}).get("status_code") == 200
                and (span["http"] or {}).get("method") == "GET" and 20 <= span["duration_ms"] <= 2000)

    truth = {t for t, spans in traffic.traces().items() if any(meets(s) for s in spans)}
    assert len(found) == min(20, len(truth)) and len(found) > 0
    assert {t["traceID"] for t in found} <= truth
    produced = traffic.traces()
    for trace in found:
        assert len(trace["spans"]) == len(produced[trace["traceID"]])
        assert any(s["operationName"] and 20_000 <= s["duration"] <= 2_000_000 for s in trace["spans"])
    # Newest first: the matching spans' newest start decides, as in Jaeger's storage.
    newest = [max(s["start_ms"] for s in produced[t["traceID"]] if meets(s)) for t in found]
    assert newest == sorted(newest, reverse=True)


def test_jaeger_ui_search_and_trace_page(traffic: Traffic) -> None:
    start_us, end_us = traffic.start_ms * 1000, traffic.end_ms * 1000
    found = _json(traffic.client, f"/api/traces?service=checkout&limit=20&lookback=1h&start={start_us}&end={end_us}"
                                  "&maxDuration&minDuration")["data"]
    with_checkout = {t for t, spans in traffic.traces().items() if any(s["service_name"] == "checkout" for s in spans)}
    assert len(found) == min(20, len(with_checkout)) and {t["traceID"] for t in found} <= with_checkout
    trace_id, spans = _biggest_trace(traffic)
    body = _json(traffic.client, f"/api/traces/{trace_id}")
    trace = body["data"][0]
    assert trace["traceID"] == trace_id and len(trace["spans"]) == len(spans)
    by_id = {s["span_id"]: s for s in spans}
    for span in trace["spans"]:
        produced = by_id[span["spanID"]]
        assert span["startTime"] == produced["start_ms"] * 1000  # microseconds
        assert span["duration"] == max(1, round(produced["duration_ms"] * 1000))
        assert trace["processes"][span["processID"]]["serviceName"] == produced["service_name"]
        parent = produced["parent_span_id"]
        child_of = [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent}] if parent else []
        assert span["references"] == child_of
        tags = {t["key"]: t["value"] for t in span["tags"]}
        assert tags["span.kind"] == produced["kind"].lower()
        assert tags.get("error", False) is (produced["status"] == "ERROR" or
                                            (produced["http"] or {}).get("status_code", 0) >= 500)
    logged = {m.body["span_id"] for m in traffic.messages if m.kind == "log" and m.body.get("trace_id") == trace_id}
    assert logged and all(any(f["key"] == "level" for log in s["logs"] for f in log["fields"])
                          for s in trace["spans"] if s["spanID"] in logged)
    unknown = _json(traffic.client, "/api/traces/ffffffffffffffffffffffffffffffff", 404)
    assert unknown["errors"][0]["code"] == 404 and unknown["data"] is None


def test_grafana_trace_by_id_with_time_params_in_milliseconds_or_microseconds(traffic: Traffic) -> None:
    trace_id, spans = _biggest_trace(traffic)
    for start, end in ((traffic.start_ms, traffic.end_ms), (traffic.start_ms * 1000, traffic.end_ms * 1000)):
        data = _json(traffic.client, f"/api/traces/{trace_id}?start={start}&end={end}")["data"]
        assert data[0]["traceID"] == trace_id and len(data[0]["spans"]) == len(spans)


def test_jaeger_dependencies_in_milliseconds(traffic: Traffic) -> None:
    expected = _expected_links(traffic)
    lookback = traffic.end_ms - traffic.start_ms
    links = _json(traffic.client, f"/api/dependencies?endTs={traffic.end_ms}&lookback={lookback}")["data"]
    assert {(link["parent"], link["child"]): link["callCount"] for link in links} == {
        key: calls for key, (calls, _) in expected.items()}
    assert {("inventory", "postgresql"), ("payments", "stripe"), ("checkout", "kafka")} <= set(expected)
    # The Jaeger UI's own request: a week back from now.
    week = _json(traffic.client, f"/api/dependencies?endTs={int(time.time() * 1000)}&lookback=604800000")["data"]
    assert {(link["parent"], link["child"]) for link in week} == set(expected)


# --- Grafana's Zipkin data source, and Lens ------------------------------------------------------------------
def test_grafana_zipkin_cascader_and_trace(traffic: Traffic) -> None:
    assert set(_json(traffic.client, "/api/v2/services")) == {s["service_name"] for s in traffic.spans}
    names = _json(traffic.client, "/api/v2/spans?serviceName=gateway")
    assert set(names) == {s["name"] for s in traffic.spans if s["service_name"] == "gateway"}
    route = sorted(n for n in names if n.startswith("GET"))[0]
    traces = _json(traffic.client, f"/api/v2/traces?serviceName=gateway&spanName={quote(route)}")
    truth = {t for t, spans in traffic.traces().items()
             if any(s["service_name"] == "gateway" and s["name"] == route for s in spans)}
    assert traces and len(traces) == min(10, len(truth)) and {t[0]["traceId"] for t in traces} <= truth
    for trace in traces:  # Grafana labels each with its root span: every trace must have one
        root = next(span for span in trace if "parentId" not in span)
        assert root["duration"] > 0 and root["name"]
    trace_id, spans = _biggest_trace(traffic)
    trace = _json(traffic.client, f"/api/v2/trace/{trace_id}")
    by_id = {s["span_id"]: s for s in spans}
    assert len(trace) == len(spans)
    for span in trace:
        produced = by_id[span["id"]]
        assert span["timestamp"] == produced["start_ms"] * 1000 and span["traceId"] == trace_id
        assert span["localEndpoint"]["serviceName"] == produced["service_name"]
        assert span.get("kind") == (produced["kind"] if produced["kind"] != "INTERNAL" else None)
    missing = traffic.client.get("/api/v2/trace/ffffffffffffffff")
    assert missing.status_code == 404 and missing.mimetype == "text/plain"


def test_lens_search_trace_and_dependency_pages(traffic: Traffic) -> None:
    config = _json(traffic.client, "/zipkin/config.json")
    assert config["dependency"]["enabled"] is True and config["queryLimit"] > 0
    assert set(_json(traffic.client, "/zipkin/api/v2/services")) == {s["service_name"] for s in traffic.spans}
    assert set(_json(traffic.client, "/zipkin/api/v2/remoteServices?serviceName=checkout")) == {
        callee for caller, callee in _expected_links(traffic) if caller == "checkout"}
    keys = _json(traffic.client, "/zipkin/api/v2/autocompleteKeys")
    assert "http.method" in keys
    assert set(_json(traffic.client, "/zipkin/api/v2/autocompleteValues?key=http.method")) == {
        s["http"]["method"] for s in traffic.spans if s["http"]}
    end, lookback = traffic.end_ms, traffic.end_ms - traffic.start_ms
    errors = _json(traffic.client, f"/zipkin/api/v2/traces?serviceName=payments&annotationQuery=error&endTs={end}"
                                   f"&lookback={lookback}&limit=10")
    failed = {t for t, spans in traffic.traces().items() if any(
        s["service_name"] == "payments" and (s["status"] == "ERROR" or (s["http"] or {}).get("status_code", 0) >= 500)
        for s in spans)}
    assert len(errors) == min(10, len(failed)) and {t[0]["traceId"] for t in errors} <= failed
    links = _json(traffic.client, f"/zipkin/api/v2/dependencies?endTs={end}&lookback={lookback}")
    assert {(link["parent"], link["child"]): (link["callCount"], link["errorCount"]) for link in links} == \
        _expected_links(traffic)
    assert traffic.client.get("/api/v2/dependencies").status_code == 400  # endTs is required, as in Zipkin
    many = _json(traffic.client, f"/zipkin/api/v2/traceMany?traceIds={','.join(sorted(traffic.traces())[:3])}")
    assert sorted(t[0]["traceId"] for t in many) == sorted(traffic.traces())[:3]
