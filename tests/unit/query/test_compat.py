"""Jaeger's and Zipkin's shapes of one trace, tags, and search matching (pure)."""

from __future__ import annotations

import pytest

from panopticon.api.jaeger import go_duration_ms, lookback_ms
from panopticon.exceptions import InvalidParameter
from panopticon.query.compat import (
    Trace,
    TraceQuery,
    jaeger_trace,
    span_tags,
    split_annotation_query,
    trace_matches,
    zipkin_spans,
)


def _span(span_id: str, service: str, parent: str | None = None, **extra) -> dict:
    base = {"id": f"t:{span_id}", "trace_id": "t", "span_id": span_id, "parent_span_id": parent,
            "service_name": service, "environment": "prod", "name": f"op {span_id}", "kind": "SERVER",
            "status": "OK", "start_time": "2024-05-01T12:00:00.100Z", "end_time": "2024-05-01T12:00:00.150Z",
            "duration_ms": 50.25, "http": None, "attributes": {}, "is_root": parent is None, "is_request": True,
            "is_error": False, "endpoint": f"op {span_id}"}
    base.update(extra)
    return base


TRACE = Trace("t", [
    _span("a", "gateway", http={"method": "GET", "route": "/x", "status_code": 200},
          attributes={"sample": True, "otel": {"resource": {"service.name": "gateway", "host.name": "h1"},
                                               "scope": {"name": "lib", "version": "1"},
                                               "events": [{"name": "cache miss", "time": "2024-05-01T12:00:00.120Z",
                                                           "attributes": {"key": "k"}}]}}),
    _span("b", "gateway", "a", kind="CLIENT", attributes={"peer.service": "checkout"}, duration_ms=30.0),
    _span("c", "checkout", "b", status="ERROR", is_error=True, attributes={"nested": {"deep": 3}, "list": [1, 2]}),
    _span("d", "checkout", "c", kind="CLIENT", attributes={"db.system": "postgresql"}),
    _span("e", "checkout", "gone"),
], [{"id": "l1", "timestamp": "2024-05-01T12:00:00.140Z", "service_name": "checkout", "environment": "prod",
     "level": "ERROR", "message": "boom", "trace_id": "t", "span_id": "c", "event_id": None, "attributes": {}}])


def test_tags_flatten_attributes_and_add_what_the_model_knows() -> None:
    tags = span_tags(TRACE.spans[2])
    assert tags["nested.deep"] == 3 and tags["list"] == "[1,2]"
    assert tags["error"] is True and tags["otel.status_code"] == "ERROR" and tags["span.kind"] == "server"
    assert "otel" not in tags and not any(k.startswith("otel.resource") for k in tags)
    root = span_tags(TRACE.spans[0])
    assert root["http.status_code"] == 200 and root["otel.scope.name"] == "lib" and "error" not in root


def test_jaeger_trace_shape() -> None:
    body = jaeger_trace(TRACE)
    assert body["traceID"] == "t" and len(body["spans"]) == 5
    spans = {s["spanID"]: s for s in body["spans"]}
    assert spans["a"]["startTime"] == 1714564800100000 and spans["a"]["duration"] == 50250
    assert spans["b"]["references"] == [{"refType": "CHILD_OF", "traceID": "t", "spanID": "a"}]
    assert spans["a"]["references"] == []
    assert spans["a"]["logs"][0]["fields"][0] == {"key": "event", "type": "string", "value": "cache miss"}
    assert spans["c"]["logs"] == [{"timestamp": 1714564800140000, "fields": [
        {"key": "event", "type": "string", "value": "boom"}, {"key": "level", "type": "string", "value": "ERROR"}]}]
    assert {"key": "error", "type": "bool", "value": True} in spans["c"]["tags"]
    assert spans["e"]["warnings"] and "gone" in spans["e"]["warnings"][0]
    processes = body["processes"]
    assert {p["serviceName"] for p in processes.values()} == {"gateway", "checkout"}
    gateway = next(p for p in processes.values() if p["serviceName"] == "gateway")
    assert {"key": "host.name", "type": "string", "value": "h1"} in gateway["tags"]
    assert spans["a"]["processID"] != spans["c"]["processID"]


def test_zipkin_spans_shape() -> None:
    spans = {s["id"]: s for s in zipkin_spans(TRACE)}
    assert spans["a"]["timestamp"] == 1714564800100000 and spans["a"]["duration"] == 50250
    assert "parentId" not in spans["a"] and spans["b"]["parentId"] == "a"
    assert spans["b"]["kind"] == "CLIENT" and spans["b"]["remoteEndpoint"] == {"serviceName": "checkout"}
    assert spans["d"]["remoteEndpoint"] == {"serviceName": "postgresql"}
    assert spans["c"]["tags"]["error"] == "true" and spans["c"]["tags"]["nested.deep"] == "3"
    assert spans["c"]["annotations"] == [{"timestamp": 1714564800140000, "value": "ERROR: boom"}]
    assert spans["a"]["localEndpoint"] == {"serviceName": "gateway"}
    assert all(isinstance(v, str) for s in spans.values() for v in s["tags"].values())


WIDE = dict(start_ms=0, end_ms=2**62, limit=10)


@pytest.mark.parametrize(("query", "matches"), [
    (TraceQuery(**WIDE, service="checkout", tags=(("error", "true"),)), True),
    (TraceQuery(**WIDE, service="gateway", tags=(("error", "true"),)), False),
    (TraceQuery(**WIDE, tags=(("http.status_code", "200"), ("http.method", "GET"))), True),
    (TraceQuery(**WIDE, tags=(("http.status_code", "500"),)), False),
    (TraceQuery(**WIDE, tags=(("cache miss", None),)), True),  # a Zipkin annotation word: an event name
    (TraceQuery(**WIDE, tags=(("peer.service", None),)), True),  # a word: a tag key
    (TraceQuery(**WIDE, service="gateway", remote_service="checkout"), True),
    (TraceQuery(**WIDE, service="checkout", remote_service="postgresql"), True),
    (TraceQuery(**WIDE, service="checkout", remote_service="stripe"), False),
    (TraceQuery(**WIDE, min_duration_ms=50.0, max_duration_ms=51.0, service="gateway"), True),
    (TraceQuery(**WIDE, min_duration_ms=60.0), False),
    (TraceQuery(start_ms=0, end_ms=1714564800100, limit=10), False),  # every span starts at the end or after
])
def test_a_trace_matches_when_one_span_meets_every_condition(query: TraceQuery, matches: bool) -> None:
    assert trace_matches(TRACE, query) is matches


def test_zipkin_annotation_query() -> None:
    assert split_annotation_query("http.method=GET and error and  http.route=/a=b") == (
        ("http.method", "GET"), ("error", None), ("http.route", "/a=b"))
    assert split_annotation_query("") == ()


@pytest.mark.parametrize(("text", "ms"), [("100ms", 100), ("1.5s", 1500), ("250us", 0.25), ("250µs", 0.25),
                                          ("1h30m", 5_400_000), ("2m", 120_000), ("500000ns", 0.5), (".5s", 500)])
def test_go_durations(text: str, ms: float) -> None:
    assert go_duration_ms(text, "minDuration") == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "100", "ms", "1d", "1.5.5s", "-1s", "1s junk"])
def test_bad_go_durations_name_the_parameter(text: str) -> None:
    with pytest.raises(InvalidParameter) as raised:
        go_duration_ms(text, "maxDuration")
    assert raised.value.parameter == "maxDuration"


def test_jaeger_ui_lookback() -> None:
    assert lookback_ms("1h") == 3_600_000 and lookback_ms("2d") == 172_800_000
    assert lookback_ms("custom") is None and lookback_ms(None) is None
    with pytest.raises(InvalidParameter):
        lookback_ms("yesterday")
