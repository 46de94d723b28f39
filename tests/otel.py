"""Real OpenTelemetry clients for the tests: the Python SDK makes the spans and logs, the SDK's own encoders
(`opentelemetry-exporter-otlp-proto-common`, and the OpenTelemetry project's `-json-common`) turn them into
the bytes a Collector's kafkaexporter or an OTLP/HTTP exporter sends. No protobuf is written by hand here."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.json.common._log_encoder import encode_logs as json_encode_logs
from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans as json_encode_spans
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["SeverityNumber", "SpanKind", "Status", "StatusCode", "encode_logs", "encode_spans", "json_encode_logs",
           "json_encode_spans", "log_records", "recorded_spans", "resource", "server_trace"]

MS = 1_000_000  # nanoseconds


def resource(service: str | None = "shop", environment: str | None = "production",
             env_key: str = "deployment.environment.name", **extra: object) -> Resource:
    """A resource with exactly these attributes (no SDK defaults, so a missing service.name stays missing)."""
    attributes: dict[str, object] = dict(extra)
    if service is not None:
        attributes["service.name"] = service
    if environment is not None:
        attributes[env_key] = environment
    return Resource(attributes)  # type: ignore[arg-type]


@contextmanager
def recorded_spans(res: Resource | None = None, limits: SpanLimits | None = None,
                   scope: str = "tests.otel") -> Iterator[tuple[object, InMemorySpanExporter]]:
    """A tracer whose finished spans are kept in memory: (tracer, exporter)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=res or resource(), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider.get_tracer(scope, "1.0"), exporter
    finally:
        provider.shutdown()


def server_trace(tracer, *, route: str = "/items/{id}", status_code: int = 200, start_ns: int | None = None,
                 duration_ms: float = 12.0, fail: bool = False, children: int = 1,
                 attributes: dict | None = None) -> None:
    """One request: a SERVER span with HTTP attributes and `children` CLIENT spans; `fail` records an
    exception on the server span and sets its status to ERROR."""
    start = start_ns if start_ns is not None else time.time_ns() - 60_000 * MS
    end = start + int(duration_ms * MS)
    span = tracer.start_span(f"GET {route}", kind=SpanKind.SERVER, start_time=start,
                             attributes={"http.route": route, "http.request.method": "GET",
                                         "http.response.status_code": status_code, **(attributes or {})})
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=False):
        for n in range(children):
            child = tracer.start_span(f"call downstream {n}", kind=SpanKind.CLIENT, start_time=start + MS)
            child.end(end_time=start + 2 * MS)
        if fail:
            try:
                raise RuntimeError("upstream refused")
            except RuntimeError as exc:
                span.record_exception(exc, timestamp=start + 3 * MS)
            span.set_status(Status(StatusCode.ERROR, "upstream refused"))
    span.end(end_time=end)


def log_records(bodies: Sequence[object], *, res: Resource | None = None,
                severity: SeverityNumber = SeverityNumber.INFO, severity_text: str | None = None,
                timestamp_ns: int | None = None, trace_id: int = 0, span_id: int = 0,
                attributes: dict | None = None) -> tuple[ReadableLogRecord, ...]:
    """Log records emitted through the SDK's LoggerProvider, one per body."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=res or resource())
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests.otel", "1.0")
    at = timestamp_ns if timestamp_ns is not None else time.time_ns() - 60_000 * MS
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    context = None
    if trace_id:
        context = trace.set_span_in_context(NonRecordingSpan(SpanContext(trace_id, span_id, False,
                                                                         TraceFlags(1))))
    for n, body in enumerate(bodies):
        logger.emit(timestamp=at + n * MS, context=context, severity_number=severity, severity_text=severity_text,
                    body=body, attributes=attributes)
    provider.shutdown()
    return exporter.get_finished_logs()


def spans_of(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    return exporter.get_finished_spans()
