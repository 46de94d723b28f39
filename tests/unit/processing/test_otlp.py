"""OTLP records -> documents: the mapping the README states, field by field, on requests made by the OpenTelemetry
SDK and encoded by its own encoders (protobuf) and the OpenTelemetry project's OTLP/JSON encoder."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.trace import SpanKind, Status, StatusCode

from panopticon import flow
from panopticon.model import KINDS, LEVELS, STATUSES
from panopticon.processing import otlp
from panopticon.processing.otlp_codec import OtlpDecodeError, parse_logs, parse_traces, serialize
from panopticon.processing.schemas import Decoded, Rejected
from tests.otel import (
    SeverityNumber,
    encode_logs,
    encode_spans,
    json_encode_logs,
    json_encode_spans,
    log_records,
    recorded_spans,
    resource,
    server_trace,
)

NOW_MS = int(time.time() * 1000)
MAX = 4 * 1024 * 1024


def traces(raw: bytes, encoding: str = "otlp_proto") -> tuple:
    return otlp.decode_traces_record(raw, topic="otlp_spans", partition=1, offset=7, now_ms=NOW_MS, max_bytes=MAX,
                                     encoding=encoding)


def logs(raw: bytes, encoding: str = "otlp_proto") -> tuple:
    return otlp.decode_logs_record(raw, topic="otlp_logs", partition=0, offset=3, now_ms=NOW_MS, max_bytes=MAX,
                                   encoding=encoding)


def sdk_spans(res=None, limits=None, **trace_args):
    with recorded_spans(res, limits) as (tracer, exporter):
        server_trace(tracer, **trace_args)
        return exporter.get_finished_spans()


def by_name(items) -> dict[str, Decoded]:
    return {item.document["name"]: item for item in items if isinstance(item, Decoded) and item.data_stream is None}


# --- spans ----------------------------------------------------------------------------------------


def test_a_server_span_maps_onto_the_span_document() -> None:
    spans = sdk_spans(route="/items/{id}", status_code=503, duration_ms=25.5)
    items = traces(encode_spans(spans).SerializeToString())
    server = by_name(items)["GET /items/{id}"]
    sdk = next(s for s in spans if s.kind is SpanKind.SERVER)
    doc = server.document
    assert server.doc_id == f"{sdk.context.trace_id:032x}:{sdk.context.span_id:016x}"
    assert (doc["trace_id"], doc["span_id"], doc["parent_span_id"]) == (f"{sdk.context.trace_id:032x}",
                                                                      f"{sdk.context.span_id:016x}", None)
    assert (doc["service_name"], doc["environment"], doc["kind"], doc["status"]) == (
        "shop", "production", "SERVER", "UNSET")
    assert doc["http"] == {"method": "GET", "route": "/items/{id}", "status_code": 503}
    assert doc["duration_ms"] == pytest.approx(25.5)
    assert (doc["is_request"], doc["is_root"], doc["endpoint"], doc["is_error"]) == (True, True, "/items/{id}", True)
    assert doc["attributes"]["http.route"] == "/items/{id}"
    assert doc["attributes"]["otel"]["resource"]["service.name"] == "shop"
    assert doc["attributes"]["otel"]["scope"] == {"name": "tests.otel", "version": "1.0", "attributes": {}}
    client = by_name(items)["call downstream 0"].document
    assert (client["kind"], client["parent_span_id"], client["is_request"]) == ("CLIENT", doc["span_id"], False)


def test_protobuf_and_otlp_json_give_the_same_documents() -> None:
    spans = sdk_spans(fail=True, children=3)
    from_proto = traces(encode_spans(spans).SerializeToString())
    from_json = traces(json_encode_spans(spans).to_json().encode(), "otlp_json")
    assert len(from_proto) == 5  # 4 spans, then the ERROR log of the exception event
    assert [(i.doc_id, i.data_stream, i.document) for i in from_proto] == [
        (i.doc_id, i.data_stream, i.document) for i in from_json]


@pytest.mark.parametrize(("sdk_kind", "kind"), [(SpanKind.INTERNAL, "INTERNAL"), (SpanKind.SERVER, "SERVER"),
                                                (SpanKind.CLIENT, "CLIENT"), (SpanKind.PRODUCER, "PRODUCER"),
                                                (SpanKind.CONSUMER, "CONSUMER")])
def test_span_kinds(sdk_kind: SpanKind, kind: str) -> None:
    with recorded_spans() as (tracer, exporter):
        tracer.start_span("work", kind=sdk_kind).end()
        (item,) = traces(encode_spans(exporter.get_finished_spans()).SerializeToString())
    assert item.document["kind"] == kind and kind in KINDS


def test_unspecified_kind_is_no_kind_and_a_root_without_kind_is_a_request() -> None:
    request = encode_spans(sdk_spans(children=0))
    request.resource_spans[0].scope_spans[0].spans[0].kind = 0  # SPAN_KIND_UNSPECIFIED
    (item,) = traces(request.SerializeToString())
    assert item.document["kind"] is None and item.document["is_request"] is True


@pytest.mark.parametrize(("code", "status", "error"), [(StatusCode.UNSET, "UNSET", False),
                                                       (StatusCode.OK, "OK", False), (StatusCode.ERROR, "ERROR", True)])
def test_status_codes(code: StatusCode, status: str, error: bool) -> None:
    with recorded_spans() as (tracer, exporter):
        span = tracer.start_span("work", kind=SpanKind.SERVER)
        span.set_status(Status(code))
        span.end()
        (item,) = traces(encode_spans(exporter.get_finished_spans()).SerializeToString())
    assert (item.document["status"], item.document["is_error"]) == (status, error) and status in STATUSES


def test_older_semantic_conventions_and_defaults() -> None:
    res = resource(service=None, environment="staging", env_key="deployment.environment")
    with recorded_spans(res) as (tracer, exporter):
        tracer.start_span("GET /old", kind=SpanKind.SERVER,
                          attributes={"http.method": "post", "http.status_code": "502"}).end()
        (item,) = traces(encode_spans(exporter.get_finished_spans()).SerializeToString())
    doc = item.document
    assert (doc["service_name"], doc["environment"]) == ("unknown_service", "staging")
    assert doc["http"] == {"method": "POST", "route": None, "status_code": 502}
    assert (doc["endpoint"], doc["is_error"]) == ("GET /old", True)
    with recorded_spans(resource(environment=None)) as (tracer, exporter):
        tracer.start_span("x").end()
        (item,) = traces(encode_spans(exporter.get_finished_spans()).SerializeToString())
    assert item.document["environment"] == "unknown"


def test_an_exception_event_becomes_an_error_log_of_its_span() -> None:
    spans = sdk_spans(fail=True)
    items = traces(encode_spans(spans).SerializeToString())
    server = by_name(items)["GET /items/{id}"]
    (log,) = [i for i in items if isinstance(i, Decoded) and i.data_stream == flow.LOGS]
    assert items[-1] is log, "span documents first, in request order; logs after"
    doc = log.document
    assert log.doc_id == f"{server.doc_id}:0"
    assert (doc["level"], doc["level_num"], doc["message"]) == ("ERROR", LEVELS["ERROR"],
                                                                "RuntimeError: upstream refused")
    assert (doc["trace_id"], doc["span_id"], doc["service_name"]) == (server.document["trace_id"],
                                                                     server.document["span_id"], "shop")
    assert doc["attributes"]["exception.type"] == "RuntimeError"
    assert "Traceback" in doc["attributes"]["exception.stacktrace"]
    assert doc["kafka"] == {"topic": "otlp_spans", "partition": 1, "offset": 7}
    assert server.document["status"] == "ERROR"
    assert server.document["attributes"]["otel"]["status_message"] == "upstream refused"
    assert [e["name"] for e in server.document["attributes"]["otel"]["events"]] == ["exception"]


def test_other_events_and_links_are_kept_in_the_attributes() -> None:
    from opentelemetry.trace import Link

    with recorded_spans() as (tracer, exporter):
        first = tracer.start_span("first")
        first.end()
        span = tracer.start_span("second", links=[Link(first.get_span_context(), {"why": "batch"})])
        span.add_event("cache miss", {"key": "k1"})
        span.end()
        items = traces(encode_spans(exporter.get_finished_spans()).SerializeToString())
    otel_doc = by_name(items)["second"].document["attributes"]["otel"]
    assert [(e["name"], e["attributes"]) for e in otel_doc["events"]] == [("cache miss", {"key": "k1"})]
    assert otel_doc["links"] == [{"trace_id": f"{first.get_span_context().trace_id:032x}",
                                  "span_id": f"{first.get_span_context().span_id:016x}",
                                  "attributes": {"why": "batch"}}]
    assert len(items) == 2, "no log for an event that is not an exception"


def test_ten_thousand_attributes_keep_the_first_128_and_count_the_rest() -> None:
    many = {f"a{n}": n for n in range(10_000)}
    spans = sdk_spans(limits=SpanLimits(max_span_attributes=20_000), attributes=many, children=0)
    request = encode_spans(spans)
    assert len(request.resource_spans[0].scope_spans[0].spans[0].attributes) == 10_003
    (item,) = traces(request.SerializeToString())
    attributes = item.document["attributes"]
    assert len(attributes) == otlp.MAX_ATTRIBUTES + 1  # + otel
    assert attributes["otel"]["dropped_attributes_count"] == 10_003 - otlp.MAX_ATTRIBUTES
    assert len(orjson.dumps(item.document)) < 20_000


def test_long_values_are_cut_and_stack_traces_keep_more() -> None:
    spans = sdk_spans(children=0, attributes={"big": "x" * 100_000, "exception.stacktrace": "y" * 100_000,
                                              "nested": [1, 2, 3]})
    (item,) = traces(encode_spans(spans).SerializeToString())
    attributes = item.document["attributes"]
    assert len(attributes["big"]) == otlp.MAX_VALUE_CHARS
    assert len(attributes["exception.stacktrace"]) == otlp.LONG_VALUE_CHARS["exception.stacktrace"]
    assert attributes["nested"] == [1, 2, 3]


def test_a_span_without_trace_id_is_rejected_alone_with_its_index_and_a_request_of_its_own() -> None:
    request = encode_spans(sdk_spans(children=3))
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[2].ClearField("trace_id")
    items = traces(request.SerializeToString())
    assert [type(i) for i in items] == [Decoded, Decoded, Rejected, Decoded]
    rejected = items[2]
    assert rejected.index == 2 and rejected.reason == "traceId: missing (empty or all zero)"
    alone = parse_traces(rejected.payload, "otlp_proto")
    assert [s.span_id for s in alone.resource_spans[0].scope_spans[0].spans] == [spans[2].span_id]
    assert alone.resource_spans[0].resource == request.resource_spans[0].resource


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("span_id", b"", "spanId: missing"), ("trace_id", b"\x01" * 8, "traceId: 8 bytes, must be 16"),
    ("parent_span_id", b"\x01" * 3, "parentSpanId: 3 bytes, must be 8"),
    ("trace_id", bytes(16), "traceId: missing"), ("span_id", bytes(8), "spanId: missing"),
    ("span_id", b"\x01" * 16, "spanId: 16 bytes, must be 8"), ("trace_id", b"\x01" * 17, "traceId: 17 bytes"),
    ("start_time_unix_nano", 0, "startTimeUnixNano: missing"),
    ("end_time_unix_nano", 0, "endTimeUnixNano: missing"),
    ("start_time_unix_nano", 1_500_000_000 * 10**6, "startTimeUnixNano: before 2000-01-01"),
    ("end_time_unix_nano", 1, "endTimeUnixNano: before startTimeUnixNano"),
])
def test_unusable_spans_say_why(field: str, value: object, reason: str) -> None:
    request = encode_spans(sdk_spans(children=0))
    setattr(request.resource_spans[0].scope_spans[0].spans[0], field, value)
    (item,) = traces(request.SerializeToString())
    assert isinstance(item, Rejected) and item.reason.startswith(reason) and item.index == 0


@pytest.mark.parametrize("parent", [b"", bytes(8)], ids=["empty", "all-zero"])
def test_a_span_without_a_parent_is_a_root(parent: bytes) -> None:
    request = encode_spans(sdk_spans(children=0))
    request.resource_spans[0].scope_spans[0].spans[0].parent_span_id = parent
    (item,) = traces(request.SerializeToString())
    assert isinstance(item, Decoded) and item.document["parent_span_id"] is None and item.document["is_root"]


def test_a_record_that_does_not_decode_is_rejected_whole() -> None:
    raw = encode_spans(sdk_spans(children=5)).SerializeToString()
    for bad, encoding, why in [(raw[: len(raw) // 2], "otlp_proto", "not a protobuf ExportTraceServiceRequest"),
                               (b"", "otlp_proto", "empty record"),
                               (raw, "otlp_json", "not valid JSON"),
                               (b"[1, 2]", "otlp_json", "not a JSON object"),
                               (b'{"resourceSpans": 5}', "otlp_json", "not an OTLP/JSON ExportTraceServiceRequest"),
                               (raw * 0 + b"x" * (MAX + 1), "otlp_proto", "record too large")]:
        (item,) = traces(bad, encoding)
        assert isinstance(item, Rejected) and item.index is None and item.payload is None
        assert item.reason.startswith(why), item.reason


def test_otlp_json_with_base64_ids_is_refused_with_a_hint() -> None:
    data = orjson.loads(json_encode_spans(sdk_spans(children=0)).to_json())
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["traceId"] = base64.b64encode(bytes.fromhex(span["traceId"])).decode()
    with pytest.raises(OtlpDecodeError, match=r"spans\[0\]\.traceId: .* not base64"):
        parse_traces(orjson.dumps(data), "otlp_json")
    (item,) = traces(orjson.dumps(data), "otlp_json")
    assert isinstance(item, Rejected) and "hex, not base64" in item.reason


def test_otlp_json_rules_int64_as_numbers_upper_case_hex_unknown_fields_snake_case() -> None:
    spans = sdk_spans(children=1)
    expected = traces(encode_spans(spans).SerializeToString())
    data = orjson.loads(json_encode_spans(spans).to_json())
    data["futureField"] = {"x": 1}
    outer = data["resourceSpans"][0]
    outer["unknownToo"] = [1]
    for span in outer["scopeSpans"][0]["spans"]:
        span["startTimeUnixNano"] = int(span["startTimeUnixNano"])  # a number instead of a string
        span["traceId"] = span["traceId"].upper()
        span["notInTheProto"] = "ignored"
        assert isinstance(span["kind"], int)
    outer["scope_spans"] = outer.pop("scopeSpans")  # the proto field name is read too
    got = traces(orjson.dumps(data), "otlp_json")
    assert [(i.doc_id, i.document) for i in got] == [(i.doc_id, i.document) for i in expected]


def test_serialize_writes_otlp_json_with_hex_ids_and_integer_enums() -> None:
    request = encode_spans(sdk_spans(children=0, fail=True))
    data = orjson.loads(serialize(request, "otlp_json"))
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    assert span["kind"] == 2 and span["status"]["code"] == 2
    assert isinstance(span["startTimeUnixNano"], str)
    assert parse_traces(serialize(request, "otlp_json"), "otlp_json") == request


# --- logs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", range(1, 25))
def test_severity_numbers(number: int) -> None:
    (item,) = logs(encode_logs(log_records(["x"], severity=SeverityNumber(number))).SerializeToString())
    expected = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"][(number - 1) // 4]
    assert (item.document["level"], item.document["level_num"]) == (expected, LEVELS[expected])


@pytest.mark.parametrize(("text", "level"), [("warning", "WARN"), ("Error", "ERROR"), ("CRITICAL", "FATAL"),
                                             ("debug", "DEBUG"), ("", "INFO"), ("whatever", "INFO")])
def test_severity_text_when_the_number_is_unspecified(text: str, level: str) -> None:
    records = log_records(["x"], severity=SeverityNumber.UNSPECIFIED, severity_text=text)
    (item,) = logs(encode_logs(records).SerializeToString())
    assert item.document["level"] == level


@pytest.mark.parametrize(("body", "message"), [
    ("plain text", "plain text"), (42, "42"), (2.5, "2.5"), (True, "true"), (b"\x00\x01", '"AAE="'),
    (["a", 1], '["a",1]'), ({"user": "u1", "n": 2}, '{"user":"u1","n":2}'), (None, ""),
])
def test_a_body_of_any_type_becomes_the_message(body: object, message: str) -> None:
    (item,) = logs(encode_logs(log_records([body])).SerializeToString())
    assert item.document["message"] == message


def test_a_log_maps_onto_the_log_document() -> None:
    records = log_records(["payment refused"], severity=SeverityNumber.ERROR, trace_id=0xABC, span_id=0xDEF,
                          attributes={"order": "o-1"})
    (item,) = logs(encode_logs(records).SerializeToString())
    doc = item.document
    assert (doc["service_name"], doc["environment"], doc["level"]) == ("shop", "production", "ERROR")
    assert (doc["trace_id"], doc["span_id"]) == (f"{0xABC:032x}", f"{0xDEF:016x}")
    assert doc["attributes"]["order"] == "o-1"
    assert doc["attributes"]["otel"]["resource"]["service.name"] == "shop"
    assert doc["event_id"] == item.doc_id and item.data_stream is None
    assert doc["kafka"] == {"topic": "otlp_logs", "partition": 0, "offset": 3}
    json_item, = logs(json_encode_logs(records).to_json().encode(), "otlp_json")
    assert (json_item.doc_id, json_item.document) == (item.doc_id, doc)


def test_log_ids_match_on_replay_and_differ_for_different_or_repeated_logs() -> None:
    at = time.time_ns() - 10**9
    batch = encode_logs(log_records(["same line", "same line"], timestamp_ns=at)).SerializeToString()
    first = [i.doc_id for i in logs(batch)]
    assert first == [i.doc_id for i in logs(batch)], "a replayed record stores nothing twice"
    other = [i.doc_id for i in logs(encode_logs(log_records(["same lime", "same line"], timestamp_ns=at))
                                    .SerializeToString())]
    assert len(set(first)) == 2, "two lines logged alike in one batch are two logs"
    assert other[0] != first[0]


def test_log_times_and_ids_are_checked() -> None:
    request = encode_logs(log_records(["a", "b", "c"]))
    records = request.resource_logs[0].scope_logs[0].log_records
    records[0].ClearField("time_unix_nano")  # observed time is used instead
    records[1].ClearField("time_unix_nano")
    records[1].ClearField("observed_time_unix_nano")
    records[2].trace_id = b"\x01" * 5
    first, second, third = logs(request.SerializeToString())
    assert isinstance(first, Decoded)
    assert first.document["timestamp"].startswith(time.strftime("%Y-%m-%dT", time.gmtime()))
    assert isinstance(second, Rejected) and second.reason.startswith("timeUnixNano and observedTimeUnixNano")
    assert isinstance(third, Rejected) and third.reason == "traceId: 5 bytes, must be 16" and third.index == 2
    assert parse_logs(third.payload, "otlp_proto").resource_logs[0].scope_logs[0].log_records[0] == records[2]


# --- the receiver's screening ---------------------------------------------------------------------


def test_screening_drops_bad_spans_in_place_and_explains() -> None:
    request = encode_spans(sdk_spans(children=3))
    request.resource_spans[0].scope_spans[0].spans[1].ClearField("span_id")
    screening = otlp.screen_traces(request, NOW_MS)
    assert (screening.accepted, screening.rejected) == (3, 1)
    assert screening.reasons == ["resourceSpans[0].scopeSpans[0].spans[1]: spanId: missing (empty or all zero)"]
    assert len(request.resource_spans[0].scope_spans[0].spans) == 3
    assert all(isinstance(i, Decoded) for i in traces(request.SerializeToString()))
    assert screening.message("spans").startswith("1 spans rejected: resourceSpans[0]")


def test_screening_warns_about_attributes_over_the_limit() -> None:
    spans = sdk_spans(limits=SpanLimits(max_span_attributes=1000), attributes={f"a{n}": n for n in range(500)})
    screening = otlp.screen_traces(encode_spans(spans), NOW_MS)
    assert screening.rejected == 0 and "more than 128 attributes" in screening.message("spans")


def test_the_decoders_never_raise_on_arbitrary_bytes() -> None:
    import random

    rng = random.Random(16)
    raw = encode_spans(sdk_spans(children=2, fail=True)).SerializeToString()
    for _ in range(300):
        mutated = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        for encoding in ("otlp_proto", "otlp_json"):
            for item in traces(bytes(mutated), encoding) + logs(bytes(mutated), encoding):
                assert isinstance(item, Decoded | Rejected)
                assert not (isinstance(item, Rejected) and item.reason.startswith("internal error")), item.reason


# --- the OTLP/JSON fast path ---------------------------------------------------------------------


def _slow(data: dict, kind: str):
    """protobuf's own parser on `data`, as the codec runs it when the fast path is unsure."""
    import copy

    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from panopticon.processing import otlp_codec

    data = copy.deepcopy(data)
    levels = otlp_codec._TRACE_LEVELS if kind == "traces" else otlp_codec._LOG_LEVELS
    message = ExportTraceServiceRequest() if kind == "traces" else ExportLogsServiceRequest()
    otlp_codec._convert_ids(data, levels, links=True, convert=otlp_codec._hex_to_base64, where="")
    json_format.ParseDict(data, message, ignore_unknown_fields=True)
    return message


def _json_samples() -> list[tuple[str, dict]]:
    from opentelemetry.trace import Link

    with recorded_spans(resource("fast", version="1.2", replicas=3, ratio=0.5, on=True,
                                 tags=["a", "b"])) as (tracer, exporter):
        server_trace(tracer, fail=True, children=2, attributes={"list": [1, 2], "f": 1.25, "b": False,
                                                                 "neg": -7})
        first = exporter.get_finished_spans()[0]
        span = tracer.start_span("linked", links=[Link(first.context, {"why": "x"})], kind=SpanKind.CONSUMER)
        span.add_event("retry", {"attempt": 2})
        span.set_status(Status(StatusCode.OK))
        span.end()
        spans = exporter.get_finished_spans()
    records = log_records(["text", 5, 1.5, True, ["x", 2], {"k": {"deep": [1]}}, None],
                          severity=SeverityNumber.WARN, severity_text="WARN", trace_id=0xABC, span_id=0xDEF,
                          attributes={"n": 1})
    return [("traces", orjson.loads(json_encode_spans(spans).to_json())),
            ("logs", orjson.loads(json_encode_logs(records).to_json())),
            ("traces", orjson.loads(serialize(encode_spans(spans), "otlp_json"))),
            ("logs", orjson.loads(serialize(encode_logs(records), "otlp_json")))]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield (*prefix, n)
            yield from _paths(value, (*prefix, n))


def test_the_otlp_json_fast_path_equals_protobufs_parser() -> None:
    import copy
    import random

    from panopticon.processing.otlp_codec import _fast_request

    rng = random.Random(16)
    replacements = [None, "x", "12", "-3", "NaN", 5, -1, 2**63, 1.5, True, [], {}, "0a0B", "zz", [{}], {"x": 1}]
    checked = taken = 0
    for kind, sample in _json_samples():
        empty = _slow({}, kind)
        fast = _fast_request(copy.deepcopy(sample), empty)
        assert fast is not None, "the SDK's own OTLP/JSON must take the fast path"
        assert fast == _slow(sample, kind)
        paths = list(_paths(sample))
        for _ in range(600):
            data = copy.deepcopy(sample)
            for _ in range(rng.randint(1, 3)):
                *parents, last = rng.choice(paths)
                node = data
                try:
                    for step in parents:
                        node = node[step]
                    action = rng.random()
                    if isinstance(node, dict) and action < 0.15:
                        node.pop(last, None)
                    elif isinstance(node, dict) and action < 0.3:
                        node[f"{last}_unknown" if rng.random() < 0.5 else "future"] = 1
                    else:
                        node[last] = rng.choice(replacements)
                except (KeyError, IndexError, TypeError):
                    continue
            try:  # as a client would send it: JSON (keys become strings; ints beyond 64 bits cannot be sent)
                data = orjson.loads(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))
            except orjson.JSONEncodeError:
                continue
            got = _fast_request(copy.deepcopy(data), empty)
            checked += 1
            if got is None:
                continue
            taken += 1
            assert got == _slow(data, kind), data
    assert checked > 2000 and taken > 100, (checked, taken)
