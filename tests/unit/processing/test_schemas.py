"""decode_span / decode_log: the message contract, each rejection reason, and "never raises"."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panopticon.model import LEVELS, is_error_level
from panopticon.model.histogram import bucket_index
from panopticon.processing.fingerprint import identify
from panopticon.processing.schemas import Decoded, Rejected, decode_log, decode_span

NOW = 1_714_564_800_000  # 2024-05-01T12:00:00Z
KAFKA = {"topic": "apm.spans", "partition": 2, "offset": 17}

SPAN = {
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "parent_span_id": None,
    "service_name": "checkout",
    "environment": "prod",
    "name": "GET /cart/{id}",
    "kind": "SERVER",
    "status": "OK",
    "start_time": "2024-05-01T11:59:59.100Z",
    "end_time": "2024-05-01T11:59:59.350Z",
    "http": {"method": "GET", "route": "/cart/:id", "status_code": 200},
    "attributes": {"user.id": "u1", "cart": {"items": 3}},
}
SPAN_CAMEL = {
    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
    "spanId": "00f067aa0ba902b7",
    "parentSpanId": "a3ce929d0e0e4736",
    "serviceName": "checkout",
    "environment": "prod",
    "name": "SELECT cart",
    "kind": "client",
    "startTime": 1_714_564_799_100,
    "durationMs": 12.5,
}
LOG = {
    "timestamp": "2024-05-01T11:59:59.100Z",
    "service_name": "checkout",
    "environment": "prod",
    "level": "ERROR",
    "message": "payment failed",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "attributes": {"order": 7},
}
SPAN_KEYS = {
    "@timestamp", "trace_id", "span_id", "parent_span_id", "service_name", "environment", "name", "kind",
    "status", "start_time", "end_time", "duration_ms", "attributes", "is_root", "is_request", "endpoint",
    "is_error", "duration_bucket", "ingested_at",
}  # plus "http" when the span has one
LOG_KEYS = {
    "@timestamp", "timestamp", "service_name", "environment", "level", "level_num", "message", "trace_id",
    "span_id", "attributes", "event_id", "ingested_at", "kafka",
}
# An ERROR/FATAL log also carries its error group (processing/fingerprint.py).
ERROR_FIELDS = {"fingerprint", "error_type", "endpoint"}


def log_keys(document: dict) -> set[str]:
    """The fields a log document must have: the contract's, and the error group's for ERROR/FATAL."""
    return LOG_KEYS | ERROR_FIELDS if document.get("level") in ("ERROR", "FATAL") else LOG_KEYS


def span(raw: bytes | Any, **overrides: Any) -> Decoded | Rejected:
    return decode_span(raw, **(KAFKA | {"now_ms": NOW} | overrides))


def log(raw: bytes | Any, **overrides: Any) -> Decoded | Rejected:
    return decode_log(raw, **(KAFKA | {"topic": "apm.logs", "now_ms": NOW} | overrides))


def changed(base: dict, /, **changes: Any) -> bytes:
    """base with keys replaced; a value of `...` removes the key."""
    merged = {**base, **changes}
    return orjson.dumps({key: value for key, value in merged.items() if value is not ...})


def decoded(result: Decoded | Rejected) -> dict:
    assert isinstance(result, Decoded), result
    return result.document


# --- valid spans -------------------------------------------------------------------------------------


def test_span_document_has_exactly_the_contract_fields() -> None:
    result = span(orjson.dumps(SPAN))
    assert result == Decoded("4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7", {
        "@timestamp": "2024-05-01T11:59:59.100Z",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "parent_span_id": None,
        "service_name": "checkout",
        "environment": "prod",
        "name": "GET /cart/{id}",
        "kind": "SERVER",
        "status": "OK",
        "start_time": "2024-05-01T11:59:59.100Z",
        "end_time": "2024-05-01T11:59:59.350Z",
        "duration_ms": 250.0,
        "http": {"method": "GET", "route": "/cart/:id", "status_code": 200},
        "attributes": {"user.id": "u1", "cart": {"items": 3}},
        "is_root": True,
        "is_request": True,
        "endpoint": "/cart/:id",
        "is_error": False,
        "duration_bucket": bucket_index(250.0),
        "ingested_at": "2024-05-01T12:00:00.000Z",
    })
    orjson.dumps(result.document)


def test_camel_case_epoch_and_duration_form() -> None:
    document = decoded(span(orjson.dumps(SPAN_CAMEL)))
    assert document["trace_id"] == SPAN_CAMEL["traceId"]
    assert document["parent_span_id"] == "a3ce929d0e0e4736"
    assert document["service_name"] == "checkout"
    assert document["kind"] == "CLIENT"
    assert document["status"] == "UNSET"
    assert document["start_time"] == "2024-05-01T11:59:59.100Z"
    assert document["end_time"] == "2024-05-01T11:59:59.112Z"
    assert document["duration_ms"] == 12.5
    assert "http" not in document
    assert document["attributes"] == {}
    assert (document["is_root"], document["is_request"], document["is_error"]) == (False, False, False)
    assert document["endpoint"] == "SELECT cart"


@pytest.mark.parametrize(("changes", "field", "expected"), [
    pytest.param({"start_time": "2024-05-01T13:59:59.100+02:00", "end_time": ...,
                  "duration_ms": 1}, "start_time", "2024-05-01T11:59:59.100Z", id="iso-offset"),
    pytest.param({"start_time": "2024-05-01T11:59:59.1", "end_time": "2024-05-01T11:59:59.2"},
                 "start_time", "2024-05-01T11:59:59.100Z", id="iso-naive-is-utc"),
    pytest.param({"start_time": 1_714_564_799_100.75, "end_time": ..., "duration_ms": 1},
                 "start_time", "2024-05-01T11:59:59.100Z", id="epoch-float"),
    pytest.param({"start_time": "1714564799100", "end_time": ..., "duration_ms": 1},
                 "start_time", "2024-05-01T11:59:59.100Z", id="epoch-numeric-string"),
    pytest.param({"end_time": "2024-05-01T11:59:59.350Z", "duration_ms": 5}, "duration_ms", 250.0,
                 id="end-time-wins-over-duration"),
    pytest.param({"end_time": ..., "duration_ms": 0}, "duration_ms", 0.0, id="zero-duration"),
    pytest.param({"end_time": ..., "durationMs": 7}, "duration_ms", 7.0, id="duration-int-stored-float"),
    pytest.param({"end_time": "2024-05-01T11:59:59.1001234Z"}, "duration_ms", 0.123, id="sub-ms-duration"),
    pytest.param({"kind": "server", "status": "error"}, "status", "ERROR", id="any-case-status"),
    pytest.param({"kind": "Consumer"}, "kind", "CONSUMER", id="any-case-kind"),
    pytest.param({"kind": None}, "kind", None, id="kind-null"),
    pytest.param({"status": ...}, "status", "UNSET", id="status-default"),
    pytest.param({"environment": ...}, "environment", "unknown", id="environment-default"),
    pytest.param({"environment": None}, "environment", "unknown", id="environment-null"),
    pytest.param({"parent_span_id": ""}, "parent_span_id", None, id="blank-parent-is-root"),
    pytest.param({"attributes": None}, "attributes", {}, id="attributes-null"),
    pytest.param({"unknown": [1, {"x": None}], "tags": "x"}, "name", "GET /cart/{id}", id="unknown-keys-ignored"),
    pytest.param({"service_name": "snake", "serviceName": "camel"}, "service_name", "snake",
                 id="snake-wins-over-camel"),
    pytest.param({"serviceName": "camel", "service_name": "snake"}, "service_name", "snake",
                 id="snake-wins-over-camel-in-any-order"),
    pytest.param({"http": {"method": "post", "statusCode": 201}}, "http",
                 {"method": "POST", "route": None, "status_code": 201}, id="http-partial-camel"),
    pytest.param({"http": {}}, "http", "absent", id="http-empty-omitted"),
    pytest.param({"http": None}, "http", "absent", id="http-null-omitted"),
    pytest.param({"http": {"route": "", "extra": 1}}, "endpoint", "GET /cart/{id}", id="empty-route-uses-name"),
    pytest.param({"http": ...}, "endpoint", "GET /cart/{id}", id="no-http-uses-name"),
])
def test_valid_span_variants(changes: dict, field: str, expected: Any) -> None:
    document = decoded(span(changed(SPAN, **changes)))
    assert set(document) - {"http"} == SPAN_KEYS
    assert document.get(field, "absent") == expected


@pytest.mark.parametrize(("changes", "is_request", "is_error"), [
    pytest.param({}, True, False, id="server"),
    pytest.param({"kind": ..., "http": ...}, True, False, id="root-without-kind"),
    pytest.param({"kind": ..., "parent_span_id": "p1"}, False, False, id="child-without-kind"),
    pytest.param({"kind": "CLIENT"}, False, False, id="client-root"),
    pytest.param({"kind": "SERVER", "parent_span_id": "p1"}, True, False, id="server-child"),
    pytest.param({"status": "ERROR"}, True, True, id="status-error"),
    pytest.param({"http": {"status_code": 503}}, True, True, id="http-5xx"),
    pytest.param({"http": {"status_code": 499}}, True, False, id="http-4xx-not-error"),
])
def test_request_and_error_flags(changes: dict, is_request: bool, is_error: bool) -> None:
    document = decoded(span(changed(SPAN, **changes)))
    assert (document["is_request"], document["is_error"]) == (is_request, is_error)


# --- rejected spans ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "reason"), [
    pytest.param(b"", "empty message", id="empty"),
    pytest.param(None, "empty message (null value)", id="tombstone"),
    pytest.param(12, "message is not bytes but int", id="not-bytes"),
    pytest.param(b"{not json", "not valid JSON: ", id="not-json"),
    pytest.param(b'{"name": "\xff"}', "not valid JSON: str is not valid UTF-8", id="invalid-utf8"),
    pytest.param(b'{"a": NaN}', "not valid JSON", id="nan"),
    pytest.param(b"[" * 5000, "not valid JSON", id="too-deep"),
    pytest.param(b"[1, 2]", "not a JSON object but a JSON array", id="array"),
    pytest.param(b'"span"', "not a JSON object but a JSON string", id="string"),
    pytest.param(b"null", "not a JSON object but a JSON null", id="null"),
    pytest.param(b"{}", "service_name: Missing data for required field", id="empty-object"),
])
def test_span_rejects_bad_bytes(raw: Any, reason: str) -> None:
    result = span(raw)
    assert isinstance(result, Rejected)
    assert reason in result.reason


def test_span_rejects_too_large() -> None:
    raw = changed(SPAN, attributes={"blob": "x" * 2000})
    assert span(raw, max_bytes=1000) == Rejected(f"message too large: {len(raw)} bytes > 1000")


@pytest.mark.parametrize(("changes", "reason"), [
    pytest.param({"trace_id": ...}, "trace_id: Missing data for required field", id="missing-trace-id"),
    pytest.param({"trace_id": None}, "trace_id: Field may not be null", id="null-trace-id"),
    pytest.param({"trace_id": 42}, "trace_id: not a string", id="numeric-trace-id"),
    pytest.param({"span_id": "a:b"}, "span_id: must be 1-128 printable ASCII characters, no spaces or ':'",
                 id="colon-in-id"),
    pytest.param({"span_id": "x" * 129}, "span_id: must be 1-128", id="id-too-long"),
    pytest.param({"trace_id": ""}, "trace_id: must be 1-128", id="id-empty"),
    pytest.param({"parent_span_id": "has space"}, "parent_span_id: must be 1-128", id="space-in-parent"),
    pytest.param({"service_name": "s" * 257}, "service_name: must be 1-256 characters", id="service-too-long"),
    pytest.param({"service_name": ""}, "service_name: must be 1-256 characters", id="service-empty"),
    pytest.param({"environment": "e" * 257}, "environment: must be 1-256 characters", id="env-too-long"),
    pytest.param({"name": "n" * 1025}, "name: must be 1-1024 characters", id="name-too-long"),
    pytest.param({"name": ["GET"]}, "name: not a string", id="name-list"),
    pytest.param({"kind": "BACKEND"}, "kind: must be one of SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER",
                 id="kind-unknown"),
    pytest.param({"kind": 1}, "kind: not a string", id="kind-number"),
    pytest.param({"status": "FAILED"}, "status: must be one of OK, ERROR, UNSET", id="status-unknown"),
    pytest.param({"start_time": "yesterday"}, "start_time: not an ISO 8601 time or epoch milliseconds",
                 id="start-time-text"),
    pytest.param({"start_time": True}, "start_time: not an ISO 8601 time or epoch milliseconds",
                 id="start-time-bool"),
    pytest.param({"start_time": ...}, "start_time: Missing data for required field", id="start-time-missing"),
    pytest.param({"start_time": "1999-12-31T23:59:59Z"}, "start_time: before 2000-01-01", id="before-2000"),
    pytest.param({"start_time": 1_714_564_799}, "start_time: before 2000-01-01 (epoch seconds instead",
                 id="epoch-seconds"),
    pytest.param({"start_time": "2024-05-03T00:00:00Z", "end_time": "2024-05-03T00:00:01Z"},
                 "start_time: more than 1 day in the future", id="future-start"),
    pytest.param({"end_time": "2024-05-03T00:00:00Z"}, "end_time: more than 1 day in the future",
                 id="future-end"),
    pytest.param({"end_time": "2024-05-01T11:59:59.000Z"}, "end_time: before start_time", id="end-before-start"),
    pytest.param({"end_time": "soon"}, "end_time: not an ISO 8601 time", id="end-time-text"),
    pytest.param({"end_time": ..., "duration_ms": -1}, "duration_ms: must be >= 0", id="negative-duration"),
    pytest.param({"end_time": ..., "duration_ms": "12"}, "duration_ms: not a number", id="duration-string"),
    pytest.param({"end_time": ..., "duration_ms": False}, "duration_ms: not a number", id="duration-bool"),
    pytest.param({"end_time": ..., "duration_ms": 3 * 86_400_000},
                 "duration_ms: ends more than 1 day in the future", id="duration-into-future"),
    pytest.param({"end_time": ...}, "end_time or duration_ms: one of them is required", id="no-end-no-duration"),
    pytest.param({"end_time": None}, "end_time or duration_ms: one of them is required", id="null-end"),
    pytest.param({"http": "GET /"}, "http: not a JSON object", id="http-string"),
    pytest.param({"http": [200]}, "http: not a JSON object", id="http-list"),
    pytest.param({"http": {"status_code": 99}}, "http.status_code: must be between 100 and 599", id="code-99"),
    pytest.param({"http": {"status_code": 600}}, "http.status_code: must be between 100 and 599", id="code-600"),
    pytest.param({"http": {"status_code": 200.5}}, "http.status_code: not an integer", id="code-float"),
    pytest.param({"http": {"status_code": "200"}}, "http.status_code: not an integer", id="code-string"),
    pytest.param({"http": {"status_code": True}}, "http.status_code: not an integer", id="code-bool"),
    pytest.param({"http": {"statusCode": 700}}, "http.statusCode: must be between 100 and 599",
                 id="camel-code-named-as-sent"),
    pytest.param({"http": {"route": "r" * 257}}, "http.route: must be at most 256 characters", id="route-too-long"),
    pytest.param({"http": {"method": 1}}, "http.method: not a string", id="method-number"),
    pytest.param({"attributes": ["a"]}, "attributes: not a JSON object", id="attributes-list"),
])
def test_span_rejection_reasons(changes: dict, reason: str) -> None:
    result = span(changed(SPAN, **changes))
    assert isinstance(result, Rejected)
    assert reason in result.reason


def test_reasons_name_camel_case_keys_as_sent_and_list_every_field() -> None:
    result = span(changed(SPAN_CAMEL, traceId=1, serviceName=None, startTime="x"))
    assert result == Rejected(
        "serviceName: Field may not be null; startTime: not an ISO 8601 time or epoch milliseconds; "
        "traceId: not a string"
    )


# --- logs --------------------------------------------------------------------------------------------


def test_log_document_has_exactly_the_contract_fields() -> None:
    raw = orjson.dumps(LOG)
    result = log(raw)
    assert result == Decoded(f"apm.logs-2-17-{hashlib.blake2b(raw, digest_size=8).hexdigest()}", {
        "@timestamp": "2024-05-01T11:59:59.100Z",
        "timestamp": "2024-05-01T11:59:59.100Z",
        "service_name": "checkout",
        "environment": "prod",
        "level": "ERROR",
        "level_num": 5,
        "message": "payment failed",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "attributes": {"order": 7},
        "event_id": None,
        "ingested_at": "2024-05-01T12:00:00.000Z",
        "kafka": {"topic": "apm.logs", "partition": 2, "offset": 17},
        "fingerprint": identify("checkout", "payment failed", {"order": 7}).fingerprint,
        "error_type": None,
        "endpoint": None,
    })
    assert is_error_level(result.document["level"])


@pytest.mark.parametrize(("changes", "field", "expected"), [
    pytest.param({"level": "warning"}, "level", "WARN", id="warning-is-warn"),
    pytest.param({"level": "Warn"}, "level_num", 4, id="warn-level-num"),
    pytest.param({"level": "fatal"}, "level_num", 6, id="fatal"),
    pytest.param({"timestamp": 1_714_564_799_100}, "timestamp", "2024-05-01T11:59:59.100Z", id="epoch"),
    pytest.param({"serviceName": "camel", "service_name": ...}, "service_name", "camel", id="camel"),
    pytest.param({"traceId": "t1", "spanId": "s1", "trace_id": ..., "span_id": ...}, "span_id", "s1",
                 id="camel-ids"),
    pytest.param({"trace_id": "", "span_id": None}, "trace_id", None, id="blank-trace-id"),
    pytest.param({"environment": ...}, "environment", "unknown", id="environment-default"),
    pytest.param({"message": ""}, "message", "", id="empty-message"),
    pytest.param({"attributes": ...}, "attributes", {}, id="no-attributes"),
    pytest.param({"eventId": "evt-1"}, "event_id", "evt-1", id="camel-event-id"),
])
def test_valid_log_variants(changes: dict, field: str, expected: Any) -> None:
    document = decoded(log(changed(LOG, **changes)))
    assert set(document) == log_keys(document)
    assert document[field] == expected


@pytest.mark.parametrize(("changes", "doc_id"), [
    pytest.param({}, "apm.logs-2-17-*", id="from-kafka-position"),
    pytest.param({"event_id": "evt:1/a"}, "evt:1/a", id="from-event-id"),
    pytest.param({"event_id": ""}, "apm.logs-2-17-*", id="blank-event-id"),
])
def test_log_doc_id(changes: dict, doc_id: str) -> None:
    raw = changed(LOG, **changes)
    result = log(raw)
    assert isinstance(result, Decoded)
    content = hashlib.blake2b(raw, digest_size=8).hexdigest()
    assert result.doc_id == doc_id.replace("*", content)


def test_log_ids_without_event_id_match_a_replay_and_never_another_log() -> None:
    """The same bytes at the same coordinates (a replay) get the same id; other bytes there (a topic recreated)
    never do."""
    first = log(orjson.dumps(LOG))
    again = log(orjson.dumps(LOG))
    other = log(orjson.dumps({**LOG, "message": "another log, after the topic was recreated"}))
    assert isinstance(first, Decoded) and isinstance(again, Decoded) and isinstance(other, Decoded)
    assert first.doc_id == again.doc_id != other.doc_id
    assert first.doc_id.startswith("apm.logs-2-17-") and other.doc_id.startswith("apm.logs-2-17-")


@pytest.mark.parametrize(("changes", "reason"), [
    pytest.param({"timestamp": ...}, "timestamp: Missing data for required field", id="no-timestamp"),
    pytest.param({"timestamp": "1999-01-01"}, "timestamp: before 2000-01-01", id="old-timestamp"),
    pytest.param({"timestamp": NOW + 86_400_001}, "timestamp: more than 1 day in the future", id="future"),
    pytest.param({"level": "NOTICE"}, "level: must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL",
                 id="unknown-level"),
    pytest.param({"level": 3}, "level: not a string", id="numeric-level"),
    pytest.param({"message": "m" * 32769}, "message: must be at most 32768 characters", id="message-too-long"),
    pytest.param({"message": {"text": "x"}}, "message: not a string", id="message-object"),
    pytest.param({"message": None}, "message: Field may not be null", id="message-null"),
    pytest.param({"service_name": ...}, "service_name: Missing data for required field", id="no-service"),
    pytest.param({"span_id": "a:b"}, "span_id: must be 1-128", id="bad-span-id"),
    pytest.param({"event_id": "e" * 129}, "event_id: must be 1-128 characters", id="event-id-too-long"),
    pytest.param({"eventId": 5}, "eventId: not a string", id="camel-event-id-number"),
    pytest.param({"attributes": "a=b"}, "attributes: not a JSON object", id="attributes-string"),
])
def test_log_rejection_reasons(changes: dict, reason: str) -> None:
    result = log(changed(LOG, **changes))
    assert isinstance(result, Rejected)
    assert reason in result.reason


@pytest.mark.parametrize(("level", "expected"), [
    pytest.param("ERROR", True, id="error"),
    pytest.param("FATAL", True, id="fatal"),
    pytest.param("WARN", False, id="warn"),
    pytest.param(None, False, id="no-level"),
])
def test_is_error_level(level: str | None, expected: bool) -> None:
    assert is_error_level(level) is expected


def test_levels_table() -> None:
    assert LEVELS == {"TRACE": 1, "DEBUG": 2, "INFO": 3, "WARN": 4, "ERROR": 5, "FATAL": 6}


# --- never raises ------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
    | st.sampled_from(["", "ERROR", "server", "2024-05-01T11:59:59Z", "1714564799100", "a:b", "Z" * 300]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def check(result: Decoded | Rejected, keys: set[str]) -> None:
    """Whatever came in, the answer is a usable Decoded or a Rejected that says why (and is not our bug)."""
    if isinstance(result, Rejected):
        assert result.reason.strip()
        assert "internal error" not in result.reason
    else:
        assert isinstance(result, Decoded) and result.doc_id
        expected = log_keys(result.document) if keys is LOG_KEYS else keys
        assert set(result.document) - {"http"} == expected
        orjson.dumps(result.document)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check(span(raw), SPAN_KEYS)
    check(log(raw), LOG_KEYS)


def mutated(base: dict, data: st.DataObject) -> bytes:
    """base with one field (maybe inside http, maybe camelCase, maybe new) replaced by any JSON, or removed."""
    message = dict(base)
    key = data.draw(st.sampled_from([*base, "http.status_code", "http.statusCode", "http.route",
                                     "durationMs", "endTime", "eventId", "level", "kind", "extra"]))
    value = data.draw(json_values | st.just(...))
    target = message
    if key.startswith("http."):
        target = message["http"] = dict(message.get("http") or {})
        key = key[5:]
    if value is ...:
        target.pop(key, None)
    else:
        target[key] = value
    return orjson.dumps(message)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), base=st.sampled_from([SPAN, SPAN_CAMEL]))
def test_near_valid_spans_never_raise(data: st.DataObject, base: dict) -> None:
    check(span(mutated(base, data)), SPAN_KEYS)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_near_valid_logs_never_raise(data: st.DataObject) -> None:
    check(log(mutated(LOG, data)), LOG_KEYS)


@settings(max_examples=200)
@given(message=st.dictionaries(st.sampled_from([*SPAN, *SPAN_CAMEL, *LOG]), json_values, max_size=12))
def test_random_objects_never_raise(message: dict) -> None:
    raw = orjson.dumps(message)
    check(span(raw), SPAN_KEYS)
    check(log(raw), LOG_KEYS)
