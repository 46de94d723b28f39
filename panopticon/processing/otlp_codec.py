"""OTLP export requests in and out of their two encodings: binary protobuf and OTLP/JSON.

OTLP/JSON is proto3's JSON mapping with the OTLP specification's deviations, and this module applies them:

* `traceId`, `spanId` and `parentSpanId` (in spans, links and log records) are case-insensitive hex, not
  base64; anything else in those fields (base64 included) makes the whole request undecodable.
* enums are integers (names are accepted too, as protobuf's parser does; the specification forbids
  senders to use them, not receivers to read them);
* 64-bit integers are decimal strings, and numbers are accepted as well;
* unknown fields are ignored; lowerCamelCase keys are the specification's, snake_case ones are accepted.

The rest (bytes values in `AnyValue` as base64, and so on) is protobuf's own JSON mapping, done by
`google.protobuf.json_format`, which also does the type checking and gives the reasons.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

__all__ = ["ENCODINGS", "OtlpDecodeError", "parse_logs", "parse_traces", "serialize"]

PROTO = "otlp_proto"
JSON = "otlp_json"
ENCODINGS = (PROTO, JSON)

M = TypeVar("M", bound=Message)

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*\Z")
# Where ids live, by the JSON key of each level (lowerCamelCase first, then the snake_case spelling).
_TRACE_LEVELS = (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans", "spans"))
_LOG_LEVELS = (("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records"))
_ID_KEYS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))


class OtlpDecodeError(ValueError):
    """The bytes are not an export request in the expected encoding; the message says where and why."""


def parse_traces(raw: bytes, encoding: str) -> ExportTraceServiceRequest:
    return _parse(raw, encoding, ExportTraceServiceRequest(), _TRACE_LEVELS, links=True)


def parse_logs(raw: bytes, encoding: str) -> ExportLogsServiceRequest:
    return _parse(raw, encoding, ExportLogsServiceRequest(), _LOG_LEVELS, links=False)


def serialize(message: Message, encoding: str) -> bytes:
    """`message` in `encoding`: binary protobuf, or OTLP/JSON (hex ids, integer enums, int64 as strings)."""
    if encoding == PROTO:
        encoded: bytes = message.SerializeToString()
        return encoded
    data = json_format.MessageToDict(message, use_integers_for_enums=True)
    _convert_ids(data, _TRACE_LEVELS if isinstance(message, ExportTraceServiceRequest) else _LOG_LEVELS,
                 links=True, convert=_base64_to_hex, where="")
    return orjson.dumps(data)


def _parse(raw: bytes, encoding: str, message: M, levels: tuple[tuple[str, str], ...], *, links: bool) -> M:
    if encoding == PROTO:
        try:
            message.ParseFromString(raw)
        except DecodeError as exc:
            raise OtlpDecodeError(f"not a protobuf {type(message).__name__}: {exc}") from None
        return message
    if encoding != JSON:
        raise ValueError(f"unknown OTLP encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OtlpDecodeError(f"not a JSON object but {type(data).__name__}")
    if _FAST_PATH and (fast := _fast_request(data, message)) is not None:
        return fast  # type: ignore[return-value]  # the type of `message`, built by _fast_request
    _convert_ids(data, levels, links=links, convert=_hex_to_base64, where="")
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpDecodeError(f"not an OTLP/JSON {type(message).__name__}: {exc}") from None
    return message


def _convert_ids(data: dict[str, Any], levels: tuple[tuple[str, str], ...], *, links: bool,
                 convert: Any, where: str) -> None:
    """Rewrite the id fields of every item in place with `convert`; leaves anything of the wrong type to
    protobuf's parser, which names it."""
    (camel, snake), rest = levels[0], levels[1:]
    for key in (camel, snake) if camel != snake else (camel,):
        children = data.get(key)
        if not isinstance(children, list):
            continue
        for n, child in enumerate(children):
            if not isinstance(child, dict):
                continue
            path = f"{where}{key}[{n}]"
            if rest:
                _convert_ids(child, rest, links=links, convert=convert, where=f"{path}.")
                continue
            _convert_item(child, convert, path)
            spans_links = child.get("links") if links else None
            if isinstance(spans_links, list):
                for m, link in enumerate(spans_links):
                    if isinstance(link, dict):
                        _convert_item(link, convert, f"{path}.links[{m}]")


def _convert_item(item: dict[str, Any], convert: Any, path: str) -> None:
    for camel, snake in _ID_KEYS:
        for key in (camel, snake):
            value = item.get(key)
            if isinstance(value, str) and value:
                item[key] = convert(value, f"{path}.{key}")


def _hex_to_base64(value: str, where: str) -> str:
    if not _HEX.match(value):
        hint = " (OTLP/JSON encodes ids as hex, not base64)" if _looks_base64(value) else ""
        raise OtlpDecodeError(f"{where}: {value[:64]!r} is not an even number of hex digits{hint}")
    return base64.b64encode(bytes.fromhex(value)).decode()


def _base64_to_hex(value: str, _where: str) -> str:
    return base64.b64decode(value).hex()


def _looks_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# Fast path for OTLP/JSON (see `_fast_request`)

_FAST_PATH = True  # tests turn it off to compare with protobuf's parser alone
_INT = re.compile(r"-?[0-9]{1,20}\Z")


class _Unsure(Exception):
    """The fast path is not certain what protobuf's parser would make of a value: let the parser decide."""


def _get(data: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = data.get(key, default)
    if value is default:
        return default
    if type(value) is not kind:
        raise _Unsure
    return value


def _str(data: dict[str, Any], key: str) -> str:
    value: str = _get(data, key, str, "")
    return value


def _uint(data: dict[str, Any], key: str) -> int:
    """A (u)int32 / int64 field: a number, or (64-bit) a decimal string."""
    value = data.get(key, 0)
    if type(value) is str and _INT.match(value):
        return int(value)
    if type(value) is not int:
        raise _Unsure
    return value


def _enum(data: dict[str, Any], key: str, known: range) -> int:
    value = data.get(key, 0)
    if type(value) is not int or value not in known:
        raise _Unsure  # names, and numbers the proto does not list, are the parser's business
    return value


def _id(data: dict[str, Any], key: str) -> bytes:
    value = data.get(key, "")
    if type(value) is not str or not _HEX.match(value):
        raise _Unsure
    return bytes.fromhex(value)


def _items(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None and key not in data:
        return []
    if type(value) is not list:
        raise _Unsure
    for item in value:
        if type(item) is not dict:
            raise _Unsure
    return value


def _any_value(data: Any) -> Any:
    if type(data) is not dict or len(data) > 1:
        raise _Unsure
    if not data:
        return AnyValue()
    ((key, value),) = data.items()
    kind = type(value)
    if key == "stringValue" and kind is str:
        return AnyValue(string_value=value)
    if key == "intValue" and (kind is int or kind is str and _INT.match(value)):
        return AnyValue(int_value=int(value))
    if key == "boolValue" and kind is bool:
        return AnyValue(bool_value=value)
    if key == "doubleValue" and (kind is float or kind is int):
        return AnyValue(double_value=value)
    if key == "arrayValue" and kind is dict:
        return AnyValue(array_value=ArrayValue(values=[_any_value(v) for v in _items_any(value, "values")]))
    if key == "kvlistValue" and kind is dict:
        return AnyValue(kvlist_value=KeyValueList(values=_key_values(value, "values")))
    raise _Unsure  # bytes (base64), snake_case, unknown keys, special numbers


def _items_any(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if type(value) is not list or len(data) > 1:
        raise _Unsure
    return value


def _key_values(data: dict[str, Any], key: str) -> list[Any]:
    out = []
    for kv in _items(data, key):
        if not _KV_KEYS.issuperset(kv):
            raise _Unsure
        value = kv.get("value")
        if value is None:
            if "value" in kv:
                raise _Unsure
            out.append(KeyValue(key=_str(kv, "key")))
        else:
            out.append(KeyValue(key=_str(kv, "key"), value=_any_value(value)))
    return out


def _resource(data: dict[str, Any]) -> Any:
    _known(data, _RESOURCE_KEYS)
    return Resource(attributes=_key_values(data, "attributes"),
                    dropped_attributes_count=_uint(data, "droppedAttributesCount"))


def _scope(data: dict[str, Any]) -> Any:
    _known(data, _SCOPE_KEYS)
    return InstrumentationScope(name=_str(data, "name"), version=_str(data, "version"),
                                attributes=_key_values(data, "attributes"),
                                dropped_attributes_count=_uint(data, "droppedAttributesCount"))


def _known(data: dict[str, Any], keys: frozenset[str]) -> None:
    """Only keys the fast path reads: anything else (snake_case spellings, fields of newer OTLP versions,
    nulls the parser treats its own way) goes to the parser."""
    if not keys.issuperset(data):
        raise _Unsure


def _message(data: Any, key: str, build: Any) -> Any:
    value = data.get(key)
    if value is None:
        if key in data:
            raise _Unsure
        return None
    if type(value) is not dict:
        raise _Unsure
    return build(value)


_KV_KEYS = frozenset({"key", "value"})
_RESOURCE_KEYS = frozenset({"attributes", "droppedAttributesCount"})
_SCOPE_KEYS = frozenset({"name", "version", "attributes", "droppedAttributesCount"})
_SPAN_KEYS = frozenset({"traceId", "spanId", "traceState", "parentSpanId", "flags", "name", "kind",
                        "startTimeUnixNano", "endTimeUnixNano", "attributes", "droppedAttributesCount", "events",
                        "droppedEventsCount", "links", "droppedLinksCount", "status"})
_EVENT_KEYS = frozenset({"timeUnixNano", "name", "attributes", "droppedAttributesCount"})
_LINK_KEYS = frozenset({"traceId", "spanId", "traceState", "attributes", "droppedAttributesCount", "flags"})
_STATUS_KEYS = frozenset({"message", "code"})
_LOG_KEYS = frozenset({"timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "body",
                       "attributes", "droppedAttributesCount", "flags", "traceId", "spanId", "eventName"})


def _event(data: dict[str, Any]) -> Span.Event:
    _known(data, _EVENT_KEYS)
    return Span.Event(time_unix_nano=_uint(data, "timeUnixNano"), name=_str(data, "name"),
                      attributes=_key_values(data, "attributes"),
                      dropped_attributes_count=_uint(data, "droppedAttributesCount"))


def _link(data: dict[str, Any]) -> Span.Link:
    _known(data, _LINK_KEYS)
    return Span.Link(trace_id=_id(data, "traceId"), span_id=_id(data, "spanId"), trace_state=_str(data, "traceState"),
                     attributes=_key_values(data, "attributes"),
                     dropped_attributes_count=_uint(data, "droppedAttributesCount"), flags=_uint(data, "flags"))


def _status(data: dict[str, Any]) -> Status:
    _known(data, _STATUS_KEYS)
    return Status(message=_str(data, "message"), code=_enum(data, "code", range(3)))  # type: ignore[arg-type]


def _span(data: dict[str, Any]) -> Span:
    _known(data, _SPAN_KEYS)
    return Span(
        trace_id=_id(data, "traceId"), span_id=_id(data, "spanId"), trace_state=_str(data, "traceState"),
        parent_span_id=_id(data, "parentSpanId"), flags=_uint(data, "flags"), name=_str(data, "name"),
        kind=_enum(data, "kind", range(6)),  # type: ignore[arg-type]  # an int the enum lists
        start_time_unix_nano=_uint(data, "startTimeUnixNano"), end_time_unix_nano=_uint(data, "endTimeUnixNano"),
        attributes=_key_values(data, "attributes"), dropped_attributes_count=_uint(data, "droppedAttributesCount"),
        events=[_event(e) for e in _items(data, "events")], dropped_events_count=_uint(data, "droppedEventsCount"),
        links=[_link(k) for k in _items(data, "links")], dropped_links_count=_uint(data, "droppedLinksCount"),
        status=_message(data, "status", _status))


def _log_record(data: dict[str, Any]) -> Any:
    _known(data, _LOG_KEYS)
    return LogRecord(
        time_unix_nano=_uint(data, "timeUnixNano"), observed_time_unix_nano=_uint(data, "observedTimeUnixNano"),
        severity_number=_enum(data, "severityNumber", range(25)),  # type: ignore[arg-type]  # an int it lists
        severity_text=_str(data, "severityText"),
        body=_message(data, "body", _any_value), attributes=_key_values(data, "attributes"),
        dropped_attributes_count=_uint(data, "droppedAttributesCount"), flags=_uint(data, "flags"),
        trace_id=_id(data, "traceId"), span_id=_id(data, "spanId"), event_name=_str(data, "eventName"))


def _fast_traces(data: dict[str, Any]) -> ExportTraceServiceRequest:
    _known(data, frozenset({"resourceSpans"}))
    outer = []
    for rs in _items(data, "resourceSpans"):
        _known(rs, frozenset({"resource", "scopeSpans", "schemaUrl"}))
        inner = []
        for ss in _items(rs, "scopeSpans"):
            _known(ss, frozenset({"scope", "spans", "schemaUrl"}))
            inner.append(ScopeSpans(scope=_message(ss, "scope", _scope), schema_url=_str(ss, "schemaUrl"),
                                    spans=[_span(span) for span in _items(ss, "spans")]))
        outer.append(ResourceSpans(resource=_message(rs, "resource", _resource), scope_spans=inner,
                                   schema_url=_str(rs, "schemaUrl")))
    return ExportTraceServiceRequest(resource_spans=outer)


def _fast_logs(data: dict[str, Any]) -> ExportLogsServiceRequest:
    _known(data, frozenset({"resourceLogs"}))
    outer = []
    for rl in _items(data, "resourceLogs"):
        _known(rl, frozenset({"resource", "scopeLogs", "schemaUrl"}))
        inner = []
        for sl in _items(rl, "scopeLogs"):
            _known(sl, frozenset({"scope", "logRecords", "schemaUrl"}))
            inner.append(ScopeLogs(scope=_message(sl, "scope", _scope), schema_url=_str(sl, "schemaUrl"),
                                   log_records=[_log_record(r) for r in _items(sl, "logRecords")]))
        outer.append(ResourceLogs(resource=_message(rl, "resource", _resource), scope_logs=inner,
                                  schema_url=_str(rl, "schemaUrl")))
    return ExportLogsServiceRequest(resource_logs=outer)


def _fast_request(data: dict[str, Any], message: Message) -> Message | None:
    """What `json_format.ParseDict` makes of `data` (ids already hex-decoded the OTLP way), when every field
    is plainly well-formed OTLP/JSON; None when not sure.

    Why: ParseDict walks protobuf descriptors in Python for every value, about 6x the cost of the protobuf
    path per span. How: the message constructors (C, in upb) fed field by field from the lowerCamelCase keys
    the specification writes. Whenever a value is not plainly what the field takes -- a snake_case key, an
    unknown field, an enum name or unlisted number, a null, base64 bytes in an AnyValue, a special float --
    the answer is None and ParseDict decides, so it stays the parser of record and its reasons are the ones
    clients see. tests/unit/processing/test_otlp.py holds the two equal on the SDK's own JSON and mutations
    of it.
    """
    try:
        return _fast_traces(data) if isinstance(message, ExportTraceServiceRequest) else _fast_logs(data)
    except (_Unsure, ValueError, TypeError, OverflowError):
        return None
