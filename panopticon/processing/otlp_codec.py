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
