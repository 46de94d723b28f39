"""The benchmark's spans as OTLP: the very spans of `bench.data.sample_messages`, made into OpenTelemetry SDK
spans and encoded by the SDK's own encoder (`opentelemetry-exporter-otlp-proto-common`), so the JSON path and
the OTLP path are measured on the same traces."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import orjson
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from bench.data import Msg
from panopticon.model.times import parse_time

SDK_KINDS = {"SERVER": SpanKind.SERVER, "CLIENT": SpanKind.CLIENT, "INTERNAL": SpanKind.INTERNAL,
             "PRODUCER": SpanKind.PRODUCER, "CONSUMER": SpanKind.CONSUMER}
SDK_STATUS = {"OK": StatusCode.OK, "ERROR": StatusCode.ERROR, "UNSET": StatusCode.UNSET}
SCOPE = InstrumentationScope("panopticon.bench", "1.0")


@cache
def _resource(service: str, environment: str) -> Resource:
    return Resource.create({"service.name": service, "deployment.environment.name": environment})


def _get(body: dict, snake: str, camel: str):
    return body.get(snake, body.get(camel))


def readable_span(body: dict) -> ReadableSpan:
    """One JSON-contract span (a sample message's body) as an SDK span with the same content."""
    trace = int(_get(body, "trace_id", "traceId"), 16)
    context = SpanContext(trace, int(_get(body, "span_id", "spanId"), 16), is_remote=False,
                          trace_flags=TraceFlags(1))
    parent_id = _get(body, "parent_span_id", "parentSpanId")
    parent = SpanContext(trace, int(parent_id, 16), is_remote=False) if parent_id else None
    start_ms = parse_time(_get(body, "start_time", "startTime"))
    assert start_ms is not None
    start_ns = int(start_ms * 1_000_000)
    end_ns = start_ns + int(float(_get(body, "duration_ms", "durationMs")) * 1_000_000)
    attributes = {f"sample.{k}": v for k, v in (body.get("attributes") or {}).items()}
    http = body.get("http")
    if http:
        attributes.update({"http.request.method": http["method"], "http.route": http["route"],
                           "http.response.status_code": http["status_code"]})
    return ReadableSpan(
        body["name"], context=context, parent=parent,
        resource=_resource(_get(body, "service_name", "serviceName"), body.get("environment", "unknown")),
        attributes=attributes, kind=SDK_KINDS[body["kind"]], status=Status(SDK_STATUS[body["status"]]),
        start_time=start_ns, end_time=end_ns, instrumentation_scope=SCOPE)


def otlp_requests(messages: Sequence[Msg], batch: int = 512) -> list[tuple[bytes, list[str]]]:
    """The span messages of `messages` as serialized ExportTraceServiceRequests of `batch` spans (the SDK's
    default batch), each with the document ids it holds."""
    spans = [(orjson.loads(m.value), m.doc_id) for m in messages if m.kind == "span"]
    out = []
    for start in range(0, len(spans), batch):
        chunk = spans[start:start + batch]
        request = encode_spans([readable_span(body) for body, _ in chunk])
        out.append((request.SerializeToString(), [doc_id for _, doc_id in chunk]))
    return out
