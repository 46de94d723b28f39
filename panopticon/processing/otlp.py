"""OTLP onto our model: export requests (from Kafka records, or checked by the `otlp` receiver) -> documents.

One record is one `ExportTraceServiceRequest` / `ExportLogsServiceRequest` (the Collector's kafkaexporter
writes one per exported batch), so a decoder returns one entry per span or log record, in request order
(resource by resource, scope by scope). A record that does not decode is rejected whole; one bad item is
rejected alone, with its index and, as payload, a request holding only that item (its resource and scope
included), in the record's encoding, so it can be fixed and produced again.

The documents are exactly the `traces-apm` / `logs-apm` documents of the JSON contract (built by
`panopticon.processing.documents`), so everything downstream treats OTLP data like any other. The mapping,
field by field, is in the README ("OpenTelemetry (OTLP) in").

Ids, deterministic so a replayed record or an SDK's retry of the same request stores nothing twice:
* span: `trace_id:span_id` (lowercase hex), as for JSON spans;
* log record: a hash of its resource, scope and record (the protobuf bytes) and its position in the request
  (resource, scope and record index): the same log sent again matches, two different logs never do, and
  two identical lines logged in one batch stay two;
* the ERROR log made from a span event named `exception`: `trace_id:span_id:event index`.

Limits (so one hostile item cannot make a huge document): see MAX_* below; what is cut is counted in
`attributes.otel.dropped_attributes_count` (and the like), never silently.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from panopticon import flow
from panopticon.model import LEVELS, endpoint_of, span_doc_id
from panopticon.model.times import time_problem
from panopticon.processing.documents import iso_ms, log_document, span_document
from panopticon.processing.otlp_codec import PROTO, OtlpDecodeError, parse_logs, parse_traces, serialize
from panopticon.processing.schemas import Decoded, DecodedRecord, Rejected

__all__ = ["Screening", "decode_logs_record", "decode_traces_record", "log_problem", "screen_logs",
           "screen_traces", "span_problem"]

# --- limits (stated in the README) ------------------------------------------------------------------
MAX_ATTRIBUTES = 128  # per attribute set: resource, scope, span, event, link, log record
MAX_VALUE_CHARS = 4096  # a string attribute value; longer ones are cut
LONG_VALUE_CHARS = {"exception.stacktrace": 32768}  # these keep more
MAX_ARRAY_ITEMS = 128  # items of an array value, entries of a key-value list value
MAX_DEPTH = 4  # nesting of array / key-value list values; deeper ones become a placeholder string
MAX_EVENTS = 128  # span events kept in attributes.otel.events (exception events all become logs)
MAX_LINKS = 128
MAX_NAME_CHARS = 1024
MAX_SERVICE_CHARS = 256
MAX_ROUTE_CHARS = 256
MAX_MESSAGE_CHARS = 32768
TOO_DEEP = "(nested deeper than 4 levels)"

UNKNOWN_SERVICE = "unknown_service"  # the OpenTelemetry default when no service.name is given
UNKNOWN_ENVIRONMENT = "unknown"  # as for JSON messages without `environment`
UNNAMED_SPAN = "unknown"

# --- OTLP's numbers -> our vocabulary (panopticon.model) ------------------------------------------------
KINDS: dict[int, str] = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}  # 0: unspecified
STATUSES: dict[int, str] = {0: "UNSET", 1: "OK", 2: "ERROR"}
# Severity numbers 1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL.
SEVERITY_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# When the number is 0 (unspecified): the text, as common logging libraries spell it; else INFO.
SEVERITY_TEXTS: dict[str, str] = {
    **{level: level for level in LEVELS}, "WARNING": "WARN", "INFORMATION": "INFO", "NOTICE": "INFO",
    "ERR": "ERROR", "CRITICAL": "FATAL", "CRIT": "FATAL", "ALERT": "FATAL", "EMERG": "FATAL",
    "EMERGENCY": "FATAL", "PANIC": "FATAL", "VERBOSE": "TRACE", "DBG": "DEBUG",
}
DEFAULT_LEVEL = "INFO"

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_NS_PER_MS = 1_000_000


# ---------------------------------------------------------------------------------------------------
# Checks shared with the receiver: what makes one item unusable (the request around it may be fine)


def _id_problem(name: str, value: bytes, size: int, *, required: bool) -> str | None:
    if not value or value == bytes(size):
        return f"{name}: missing (empty or all zero)" if required else None
    if len(value) != size:
        return f"{name}: {len(value)} bytes, must be {size}"
    return None


def span_problem(span: Span, now_ms: int) -> str | None:
    """Why `span` cannot be stored, or None."""
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    # Nearly every span has good ids: one test of them all, and the reason only when it fails.
    if not (len(trace_id) == 16 and trace_id != _ZERO_TRACE and len(span_id) == 8 and span_id != _ZERO_SPAN
            and (not parent or len(parent) == 8)):
        return (_id_problem("traceId", trace_id, 16, required=True)
                or _id_problem("spanId", span_id, 8, required=True)
                or _id_problem("parentSpanId", parent, 8, required=False))
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not start:
        return "startTimeUnixNano: missing"
    if not end:
        return "endTimeUnixNano: missing"
    if problem := time_problem(start / _NS_PER_MS, now_ms):
        return f"startTimeUnixNano: {problem}"
    if end < start:
        return "endTimeUnixNano: before startTimeUnixNano"
    if problem := time_problem(end / _NS_PER_MS, now_ms):
        return f"endTimeUnixNano: {problem}"
    return None


def log_problem(record: LogRecord, now_ms: int) -> str | None:
    """Why `record` cannot be stored, or None."""
    problem = (_id_problem("traceId", record.trace_id, 16, required=False)
               or _id_problem("spanId", record.span_id, 8, required=False))
    if problem:
        return problem
    at = record.time_unix_nano or record.observed_time_unix_nano
    if not at:
        return "timeUnixNano and observedTimeUnixNano: both missing"
    if problem := time_problem(at / _NS_PER_MS, now_ms):
        name = "timeUnixNano" if record.time_unix_nano else "observedTimeUnixNano"
        return f"{name}: {problem}"
    return None


@dataclass
class Screening:
    """What the receiver found in a request: counts, the first reasons, and warnings (limits applied)."""

    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def message(self, noun: str) -> str:
        parts = []
        if self.rejected:
            parts.append(f"{self.rejected} {noun} rejected: " + "; ".join(self.reasons))
        parts.extend(self.warnings)
        return ". ".join(parts)


MAX_REASONS = 5


def screen_traces(request: ExportTraceServiceRequest, now_ms: int) -> Screening:
    """Drop the spans that cannot be stored from `request` (in place), counting and explaining them."""
    screening = Screening()
    long_spans = 0
    for r, resource_spans in enumerate(request.resource_spans):
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            bad = []
            for n, span in enumerate(scope_spans.spans):
                problem = span_problem(span, now_ms)
                if problem is None:
                    screening.accepted += 1
                    long_spans += len(span.attributes) > MAX_ATTRIBUTES
                    continue
                bad.append(n)
                _note(screening, f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]: {problem}")
            for n in reversed(bad):
                del scope_spans.spans[n]
    if long_spans:
        screening.warnings.append(f"{long_spans} spans have more than {MAX_ATTRIBUTES} attributes: the first "
                                  f"{MAX_ATTRIBUTES} are kept")
    return screening


def screen_logs(request: ExportLogsServiceRequest, now_ms: int) -> Screening:
    """Drop the log records that cannot be stored from `request` (in place), counting and explaining them."""
    screening = Screening()
    for r, resource_logs in enumerate(request.resource_logs):
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            bad = []
            for n, record in enumerate(scope_logs.log_records):
                problem = log_problem(record, now_ms)
                if problem is None:
                    screening.accepted += 1
                    continue
                bad.append(n)
                _note(screening, f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{n}]: {problem}")
            for n in reversed(bad):
                del scope_logs.log_records[n]
    return screening


def _note(screening: Screening, reason: str) -> None:
    screening.rejected += 1
    if len(screening.reasons) < MAX_REASONS:
        screening.reasons.append(reason)
    elif len(screening.reasons) == MAX_REASONS:
        screening.reasons.append("...")


# ---------------------------------------------------------------------------------------------------
# Values


def _value(value: AnyValue, key: str, depth: int) -> Any:
    """An AnyValue as plain JSON: strings (cut), numbers, booleans, lists, objects; bytes as base64."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text = value.string_value
        if len(text) > MAX_VALUE_CHARS:
            text = text[:LONG_VALUE_CHARS.get(key, MAX_VALUE_CHARS)]
        return text
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)  # JSON has no NaN / infinity
    if kind == "array_value":
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return [_value(item, key, depth + 1) for item in value.array_value.values[:MAX_ARRAY_ITEMS]]
    if kind == "kvlist_value":
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return {kv.key: _value(kv.value, kv.key, depth + 1) for kv in value.kvlist_value.values[:MAX_ARRAY_ITEMS]}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value[:MAX_VALUE_CHARS]).decode()
    return None


def _attributes(pairs: Any, dropped: int = 0) -> tuple[dict[str, Any], int]:
    """Up to MAX_ATTRIBUTES key-value pairs as a dict, and how many were dropped (here and by the sender)."""
    count = len(pairs)
    if count > MAX_ATTRIBUTES:
        dropped += count - MAX_ATTRIBUTES
        pairs = pairs[:MAX_ATTRIBUTES]
    out: dict[str, Any] = {}
    for kv in pairs:
        key = kv.key
        out[key] = _value(kv.value, key, 0)
    return out, dropped


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _method(value: Any) -> str | None:
    text = _text(value, 32)
    return text.upper() if text else None


def _status_code(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is int and 100 <= value <= 599:
        return value
    return None


def _body_text(body: AnyValue) -> str:
    """A log body of any type as the message: strings as they are, anything else as its JSON text."""
    kind = body.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return body.string_value[:MAX_MESSAGE_CHARS]
    return orjson.dumps(_value(body, "body", 0)).decode()[:MAX_MESSAGE_CHARS]


def _level(number: int, text: str) -> str:
    if 1 <= number <= 24:
        return SEVERITY_LEVELS[(number - 1) // 4]
    if number > 24:
        return "FATAL"
    return SEVERITY_TEXTS.get(text.strip().upper(), DEFAULT_LEVEL)


def _ms(nanos: int) -> float:
    return nanos / _NS_PER_MS


def _iso_ns(nanos: int) -> str:
    return iso_ms(_ms(nanos))


# ---------------------------------------------------------------------------------------------------
# Resource and scope: read once per group, shared by the documents of that group


@dataclass(frozen=True, slots=True)
class _Origin:
    """What the items of one resource + scope share."""

    service: str
    environment: str
    otel: dict[str, Any]  # attributes.otel of every document of the group: resource and scope


def _origin(resource: Resource, scope: InstrumentationScope) -> _Origin:
    attributes, dropped = _attributes(resource.attributes, resource.dropped_attributes_count)
    service = _text(attributes.get("service.name"), MAX_SERVICE_CHARS) or UNKNOWN_SERVICE
    environment = (_text(attributes.get("deployment.environment.name"), MAX_SERVICE_CHARS)
                   or _text(attributes.get("deployment.environment"), MAX_SERVICE_CHARS) or UNKNOWN_ENVIRONMENT)
    scope_attributes, scope_dropped = _attributes(scope.attributes, scope.dropped_attributes_count)
    scope_doc: dict[str, Any] = {"name": scope.name, "version": scope.version, "attributes": scope_attributes}
    if scope_dropped:
        scope_doc["dropped_attributes_count"] = scope_dropped
    otel: dict[str, Any] = {"resource": attributes, "scope": scope_doc}
    if dropped:
        otel["resource_dropped_attributes_count"] = dropped
    return _Origin(service, environment, otel)


def _group_key(resource: Resource, scope: InstrumentationScope, resource_schema: str, scope_schema: str) -> bytes:
    """The bytes of a log's resource and scope, for its id (deterministic serialization: same message, same
    bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (resource.SerializeToString(deterministic=True), resource_schema.encode(),
                 scope.SerializeToString(deterministic=True), scope_schema.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


# ---------------------------------------------------------------------------------------------------
# Spans


def _span_entries(span: Span, origin: _Origin, now_ms: int, kafka: dict[str, Any],
                  logs: list[Decoded | Rejected]) -> Decoded | Rejected:
    """The document of one span (already checked), appending the ERROR logs of its exception events."""
    # Each read of a message or list field makes a new wrapper object: every one is read once.
    attributes, dropped = _attributes(span.attributes, span.dropped_attributes_count)
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    parent = span.parent_span_id
    name = span.name[:MAX_NAME_CHARS] or UNNAMED_SPAN
    status = span.status
    extra: dict[str, Any] | None = None
    if dropped:
        extra = {"dropped_attributes_count": dropped}
    if status.message:
        extra = extra or {}
        extra["status_message"] = status.message[:MAX_VALUE_CHARS]
    events, dropped_events = span.events, span.dropped_events_count
    if events or dropped_events:
        extra = extra or {}
        # An exception event's log names the endpoint of the span it happened in (its route, else its name).
        endpoint = endpoint_of(_text(attributes.get("http.route"), MAX_ROUTE_CHARS), name)
        kept = _events(span, events, trace_id, span_id, origin, now_ms, kafka, logs, endpoint)
        if kept:
            extra["events"] = kept
        if dropped_events or len(events) > MAX_EVENTS:
            extra["dropped_events_count"] = dropped_events + max(0, len(events) - MAX_EVENTS)
    links, dropped_links = span.links, span.dropped_links_count
    if links or dropped_links:
        extra = extra or {}
        extra["links"] = [_link(link) for link in links[:MAX_LINKS]]
        if dropped_links or len(links) > MAX_LINKS:
            extra["dropped_links_count"] = dropped_links + max(0, len(links) - MAX_LINKS)
    attributes["otel"] = origin.otel if extra is None else {**origin.otel, **extra}
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    loaded = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent.hex() if parent and parent != _ZERO_SPAN else None,
        "service_name": origin.service,
        "environment": origin.environment,
        "name": name,
        "kind": KINDS.get(span.kind),
        "status": STATUSES.get(status.code, "UNSET"),
        "http_method": _method(attributes.get("http.request.method") or attributes.get("http.method")),
        "http_route": _text(attributes.get("http.route"), MAX_ROUTE_CHARS),
        "http_status_code": _status_code(attributes.get("http.response.status_code")
                                         or attributes.get("http.status_code")),
        "attributes": attributes,
    }
    document = span_document(loaded, _ms(start), _ms(end), (end - start) / _NS_PER_MS, now_ms)
    return Decoded(span_doc_id(trace_id, span_id), document)


def _events(span: Span, events: Any, trace_id: str, span_id: str, origin: _Origin, now_ms: int,
            kafka: dict[str, Any], logs: list[Decoded | Rejected], endpoint: str) -> list[dict[str, Any]]:
    """Span events for attributes.otel.events; each one named `exception` also becomes an ERROR log."""
    kept = []
    for n, event in enumerate(events):
        if event.name == "exception":
            logs.append(_exception_log(span, event, n, trace_id, span_id, origin, now_ms, kafka, endpoint))
        if n < MAX_EVENTS:
            attributes, dropped = _attributes(event.attributes, event.dropped_attributes_count)
            entry: dict[str, Any] = {"name": event.name, "time": _iso_ns(event.time_unix_nano or
                                                                          span.start_time_unix_nano),
                                     "attributes": attributes}
            if dropped:
                entry["dropped_attributes_count"] = dropped
            kept.append(entry)
    return kept


def _exception_log(span: Span, event: Span.Event, n: int, trace_id: str, span_id: str, origin: _Origin,
                   now_ms: int, kafka: dict[str, Any], endpoint: str) -> Decoded:
    attributes, dropped = _attributes(event.attributes, event.dropped_attributes_count)
    kind, text = attributes.get("exception.type"), attributes.get("exception.message")
    message = ": ".join(str(part) for part in (kind, text) if part) or "exception"
    at_ns = event.time_unix_nano
    if not at_ns or time_problem(_ms(at_ns), now_ms):
        at_ns = span.start_time_unix_nano  # checked with the span
    extra: dict[str, Any] = {"event": "exception", "span_name": span.name[:MAX_NAME_CHARS]}
    if dropped:
        extra["dropped_attributes_count"] = dropped
    attributes["otel"] = {**origin.otel, **extra}
    doc_id = f"{trace_id}:{span_id}:{n}"
    log = {"service_name": origin.service, "environment": origin.environment, "level": "ERROR",
           "message": message[:MAX_MESSAGE_CHARS], "trace_id": trace_id, "span_id": span_id,
           "attributes": attributes, "event_id": doc_id, "endpoint": endpoint}
    return Decoded(doc_id, log_document(log, _ms(at_ns), LEVELS["ERROR"], now_ms, kafka), flow.LOGS)


def _link(link: Span.Link) -> dict[str, Any]:
    attributes, dropped = _attributes(link.attributes, link.dropped_attributes_count)
    entry: dict[str, Any] = {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(), "attributes": attributes}
    if dropped:
        entry["dropped_attributes_count"] = dropped
    return entry


def _traces_alone(resource_spans: ResourceSpans, scope_spans: ScopeSpans, span: Span,
                  encoding: str) -> bytes:
    """A request holding only `span`, with its resource and scope: a rejected span's dead letter."""
    single = ExportTraceServiceRequest()
    outer = single.resource_spans.add(resource=resource_spans.resource, schema_url=resource_spans.schema_url)
    inner = outer.scope_spans.add(scope=scope_spans.scope, schema_url=scope_spans.schema_url)
    inner.spans.append(span)
    return serialize(single, encoding)


def decode_traces_record(raw: bytes, *, topic: str, partition: int, offset: int, now_ms: int,
                         max_bytes: int, encoding: str = PROTO) -> DecodedRecord:
    """One OTLP trace record: a document per span, in request order, then the ERROR logs of its exception
    events (`data_stream` logs-apm). Never raises."""
    try:
        request = _record(raw, max_bytes, encoding, parse_traces)
        if isinstance(request, Rejected):
            return (request,)
        kafka = {"topic": topic, "partition": partition, "offset": offset}
        spans: list[Decoded | Rejected] = []
        logs: list[Decoded | Rejected] = []
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                origin = _origin(resource_spans.resource, scope_spans.scope)
                for span in scope_spans.spans:
                    problem = span_problem(span, now_ms)
                    if problem is None:
                        spans.append(_span_entries(span, origin, now_ms, kafka, logs))
                    else:
                        spans.append(Rejected(problem, len(spans),
                                              _traces_alone(resource_spans, scope_spans, span, encoding)))
        if not spans and request.ByteSize() == 0 and raw:
            return (Rejected(f"holds no OTLP trace data (unknown fields only): not an ExportTraceServiceRequest "
                             f"in {encoding}?"),)
        return (*spans, *logs)
    except Exception as exc:  # the contract is "never raise"
        return (Rejected(f"internal error while decoding OTLP: {type(exc).__name__}: {exc}"[:1000]),)


# ---------------------------------------------------------------------------------------------------
# Logs


def _log_entry(record: LogRecord, origin: _Origin, group: bytes, position: str, now_ms: int,
               kafka: dict[str, Any]) -> Decoded:
    attributes, dropped = _attributes(record.attributes, record.dropped_attributes_count)
    extra: dict[str, Any] = {}
    if record.severity_text:
        extra["severity_text"] = record.severity_text[:64]
    if record.severity_number:
        extra["severity_number"] = record.severity_number
    if record.event_name:
        extra["event_name"] = record.event_name[:MAX_NAME_CHARS]
    if dropped:
        extra["dropped_attributes_count"] = dropped
    attributes["otel"] = {**origin.otel, **extra} if extra else origin.otel
    digest = hashlib.blake2b(group, digest_size=16)
    content = record.SerializeToString(deterministic=True)
    digest.update(len(content).to_bytes(8, "big"))
    digest.update(content)
    digest.update(position.encode())
    doc_id = digest.hexdigest()
    level = _level(record.severity_number, record.severity_text)
    trace_id, span_id = record.trace_id, record.span_id
    log = {"service_name": origin.service, "environment": origin.environment, "level": level,
           "message": _body_text(record.body), "trace_id": trace_id.hex() if trace_id and trace_id != _ZERO_TRACE
           else None, "span_id": span_id.hex() if span_id and span_id != _ZERO_SPAN else None,
           "attributes": attributes, "event_id": doc_id}
    at = record.time_unix_nano or record.observed_time_unix_nano
    return Decoded(doc_id, log_document(log, _ms(at), LEVELS[level], now_ms, kafka))


def _logs_alone(resource_logs: ResourceLogs, scope_logs: ScopeLogs, record: LogRecord, encoding: str) -> bytes:
    """A request holding only `record`, with its resource and scope: a rejected log's dead letter."""
    single = ExportLogsServiceRequest()
    outer = single.resource_logs.add(resource=resource_logs.resource, schema_url=resource_logs.schema_url)
    inner = outer.scope_logs.add(scope=scope_logs.scope, schema_url=scope_logs.schema_url)
    inner.log_records.append(record)
    return serialize(single, encoding)


def decode_logs_record(raw: bytes, *, topic: str, partition: int, offset: int, now_ms: int,
                       max_bytes: int, encoding: str = PROTO) -> DecodedRecord:
    """One OTLP log record: a document per log record, in request order. Never raises."""
    try:
        request = _record(raw, max_bytes, encoding, parse_logs)
        if isinstance(request, Rejected):
            return (request,)
        kafka = {"topic": topic, "partition": partition, "offset": offset}
        out: list[Decoded | Rejected] = []
        for r, resource_logs in enumerate(request.resource_logs):
            for s, scope_logs in enumerate(resource_logs.scope_logs):
                origin = _origin(resource_logs.resource, scope_logs.scope)
                group = _group_key(resource_logs.resource, scope_logs.scope, resource_logs.schema_url,
                                   scope_logs.schema_url)
                for n, record in enumerate(scope_logs.log_records):
                    problem = log_problem(record, now_ms)
                    if problem is None:
                        out.append(_log_entry(record, origin, group, f"{r}/{s}/{n}", now_ms, kafka))
                    else:
                        out.append(Rejected(problem, len(out),
                                            _logs_alone(resource_logs, scope_logs, record, encoding)))
        if not out and request.ByteSize() == 0 and raw:
            return (Rejected(f"holds no OTLP log data (unknown fields only): not an ExportLogsServiceRequest "
                             f"in {encoding}?"),)
        return tuple(out)
    except Exception as exc:  # the contract is "never raise"
        return (Rejected(f"internal error while decoding OTLP: {type(exc).__name__}: {exc}"[:1000]),)


# ---------------------------------------------------------------------------------------------------


def _record(raw: bytes, max_bytes: int, encoding: str, parse: Callable[[bytes, str], Any]) -> Any:
    """The record's request, or the whole record's rejection."""
    size = len(raw) if raw is not None else 0
    if size == 0:
        return Rejected("empty record")
    if size > max_bytes:
        return Rejected(f"record too large: {size} bytes > {max_bytes} (OTLP_MAX_BODY_BYTES)")
    try:
        return parse(bytes(raw), encoding)
    except OtlpDecodeError as exc:
        return Rejected(f"{exc}"[:1000])

