"""Turn one raw Kafka message into a stored document, or into a rejection with a reason.

This is the hot ingest path and the only gate between producers and the data streams, so:

* `decode_span` / `decode_log` never raise, whatever the bytes: a bad message must become a
  dead-letter entry with a reason, never a crashed batch.
* Work per message is kept small: orjson parses, a prebuilt marshmallow schema validates a dict that
  holds only the keys we know, and the document is built once in plain Python. A plainly valid message
  skips marshmallow's machinery through an exactly equivalent fast path (see "Fast path" below), whose
  field checks are compiled (`_loader.pyx`).

Input rules beyond the message contract (decided here, relied on elsewhere):

* camelCase keys are renamed to snake_case before validation; when both spellings are present the
  snake_case one wins. Reasons name the key as the producer sent it.
* Unknown keys are ignored. `null` on an optional field means "absent"; so does "" for the optional
  ids (`parent_span_id`, a log's `trace_id` / `span_id`, `event_id`), as OTLP JSON sends "" for roots.
* Span and trace ids are 1-128 printable ASCII characters without spaces or ':'. That keeps the span
  document id `trace_id:span_id` unambiguous and well under the engine's 512-byte `_id` limit.
* `kind`, `status`, `level` and `http.method` accept any case and are stored upper case.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing

from panopticon.model import ID_MAX_CHARS, ID_RE, ID_RULE, KINDS, LEVEL_ALIASES, LEVELS, STATUSES, span_doc_id
from panopticon.model.times import MAX_FUTURE_MS, parse_time, time_problem
from panopticon.processing import _loader
from panopticon.processing.documents import log_document, span_document

__all__ = ["Decoded", "DecodedRecord", "Rejected", "decode_log", "decode_log_record", "decode_span",
           "decode_span_record"]

DEFAULT_MAX_BYTES = 1_048_576
MAX_REASON_CHARS = 1000


class Decoded(NamedTuple):
    """A valid message, ready to index under `doc_id` (deterministic, so re-delivery is idempotent).

    `data_stream` is where it goes when that is not its stream's own (None): an OTLP trace record also
    yields logs (span events named `exception`), stored in `logs-apm`. A tuple: one is made per document,
    and a frozen dataclass costs twice as much to build.
    """

    doc_id: str
    document: dict[str, Any]
    data_stream: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An invalid message, or one invalid item of a record that holds many; `reason` names the field(s)
    and what was wrong, for the dead-letter entry.

    `index` is the item's position inside its record (None: the whole record is rejected) and `payload`
    the item's own bytes to dead-letter (None: the record's bytes).
    """

    reason: str
    index: int | None = None
    payload: bytes | None = None


# What a decoder makes of one Kafka record: one entry per document it holds, valid or not. A JSON message
# is one document; an OTLP record carries many, and one bad item inside it is rejected alone.
DecodedRecord = tuple[Decoded | Rejected, ...]


class _Field(fields.Field[Any]):
    """Base for our fields: each checks its value in `_deserialize`, in one call.

    marshmallow's `Field.deserialize` also runs field-level pre/post-load hooks and builds a fresh
    `And(*validators)` for every value; with ~16 fields per message that was a third of the hot path.
    Our fields use neither, so `deserialize` keeps only the missing / null handling.
    """

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any) -> Any:
        if value is missing:
            if self.required:
                raise self.make_error("required")
            default = self.load_default
            return default() if callable(default) else default
        if value is None:
            if self.allow_none:
                return None
            raise self.make_error("null")
        return self._deserialize(value, attr, data, **kwargs)


class Text(_Field):
    """A string of min_chars..max_chars characters."""

    default_error_messages = {"invalid": "not a string"}

    def __init__(self, max_chars: int, min_chars: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.length_error = (f"must be {min_chars}-{max_chars} characters" if min_chars
                             else f"must be at most {max_chars} characters")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if not self.min_chars <= len(value) <= self.max_chars:
            raise ValidationError(self.length_error)
        return value


class Id(_Field):
    """A trace / span id: 1-128 printable ASCII characters, no spaces or ':' (see module docstring)."""

    default_error_messages = {"invalid": "not a string"}
    pattern = ID_RE

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if not self.pattern.match(value):
            raise ValidationError(ID_RULE)
        return value


class Upper(Text):
    """A string stored upper case, one of `choices` (after applying `aliases`) when choices are given."""

    def __init__(self, choices: tuple[str, ...] = (), aliases: dict[str, str] | None = None,
                 max_chars: int = 32, **kwargs: Any) -> None:
        super().__init__(max_chars, **kwargs)
        self.choices = frozenset(choices)
        self.aliases = aliases or {}
        self.choice_error = f"must be one of {', '.join(choices)} (any case)"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        text = value.upper()
        if not self.choices:
            return super()._deserialize(text, attr, data, **kwargs)
        text = self.aliases.get(text, text)
        if text not in self.choices:
            raise ValidationError(self.choice_error)
        return text


class Time(_Field):
    """A time that loads to epoch milliseconds (float); the plausible range is checked later."""

    default_error_messages = {"invalid": "not an ISO 8601 time or epoch milliseconds"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        epoch_ms = parse_time(value)
        if epoch_ms is None:
            raise self.make_error("invalid")
        return epoch_ms


class Number(_Field):
    """A JSON number (not a boolean, not a string) in minimum..maximum; integral_only for codes."""

    def __init__(self, minimum: float, maximum: float, integral_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum
        self.types: tuple[type, ...] = (int,) if integral_only else (int, float)
        self.type_error = "not an integer" if integral_only else "not a number"
        self.range_error = (f"must be >= {minimum:g}" if maximum == math.inf
                            else f"must be between {minimum:g} and {maximum:g}")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not isinstance(value, self.types):
            raise ValidationError(self.type_error)
        if not self.minimum <= value <= self.maximum:
            raise ValidationError(self.range_error)
        return value


class JsonObject(_Field):
    """Free-form JSON object, kept as parsed: orjson made it for this message alone, so no copy."""

    default_error_messages = {"invalid": "not a JSON object"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        return value


class NotAnObject(_Field):
    """Stands for `http` when it was not an object (an object's members are loaded as http_* fields)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> None:
        raise ValidationError("not a JSON object")


# ---------------------------------------------------------------------------------------------------
# Schemas (instances are built once at import: building one per message would cost more than loading)


class SpanSchema(Schema):
    """A span; `http.*` arrives flattened to http_* by `_canonical` (a Nested schema costs ~2x more)."""

    class Meta:
        unknown = EXCLUDE

    trace_id = Id(required=True)
    span_id = Id(required=True)
    parent_span_id = Id(load_default=None)
    service_name = Text(256, required=True)
    environment = Text(256, load_default="unknown")
    name = Text(1024, required=True)
    kind = Upper(KINDS, load_default=None)
    status = Upper(STATUSES, load_default="UNSET")
    start_time = Time(required=True)
    end_time = Time(load_default=None)
    duration_ms = Number(0, math.inf, load_default=None)
    http = NotAnObject(load_default=None)
    http_method = Upper(load_default=None)
    http_route = Text(256, min_chars=0, load_default=None)
    http_status_code = Number(100, 599, integral_only=True, load_default=None)
    attributes = JsonObject(load_default=dict)


class LogSchema(Schema):
    """A log line; the timestamp's plausible range is checked after loading (it depends on now_ms)."""

    class Meta:
        unknown = EXCLUDE

    timestamp = Time(required=True)
    service_name = Text(256, required=True)
    environment = Text(256, load_default="unknown")
    level = Upper(tuple(LEVELS), aliases=LEVEL_ALIASES, required=True)
    message = Text(32768, min_chars=0, required=True)
    trace_id = Id(load_default=None)
    span_id = Id(load_default=None)
    attributes = JsonObject(load_default=dict)
    event_id = Text(128, load_default=None)


_SPAN_SCHEMA = SpanSchema()
_LOG_SCHEMA = LogSchema()

# snake_case name -> the camelCase spelling TypeScript producers send.
_CAMEL = {
    "trace_id": "traceId", "span_id": "spanId", "parent_span_id": "parentSpanId",
    "service_name": "serviceName", "start_time": "startTime", "end_time": "endTime",
    "duration_ms": "durationMs", "status_code": "statusCode", "event_id": "eventId",
}
_HTTP_NAMES = {"method": "http_method", "route": "http_route", "status_code": "http_status_code",
               "statusCode": "http_status_code"}
_BLANK_IS_ABSENT = frozenset({"parent_span_id", "trace_id", "span_id", "event_id"})


@dataclass(frozen=True, slots=True)
class _Keys:
    """How one schema's input keys map to field names, and which fields may be left out."""

    names: dict[str, str]
    optional: frozenset[str]
    blank_is_absent: frozenset[str]


def _keys_for(schema: Schema) -> _Keys:
    names = {name: name for name in schema.fields if not name.startswith("http_")}
    names.update({camel: snake for snake, camel in _CAMEL.items() if snake in names})
    optional = frozenset(name for name, field in schema.fields.items() if not field.required)
    return _Keys(names, optional, _BLANK_IS_ABSENT & optional)


_SPAN_KEYS = _keys_for(_SPAN_SCHEMA)
_LOG_KEYS = _keys_for(_LOG_SCHEMA)


def _canonical(message: dict[str, Any], keys: _Keys) -> dict[str, Any]:
    """Only the known keys, under their snake_case names, with absent-meaning values dropped."""
    out: dict[str, Any] = {}
    for key, value in message.items():
        name = keys.names.get(key)
        if name is None or key != name and name in out:  # unknown, or camelCase after snake_case
            continue
        if name in keys.optional and (value is None or (value == "" and name in keys.blank_is_absent)):
            continue
        if name == "http" and isinstance(value, dict):
            _flatten_http(value, out)
        else:
            out[name] = value
    return out


def _flatten_http(http: dict[str, Any], out: dict[str, Any]) -> None:
    for key, value in http.items():
        name = _HTTP_NAMES.get(key)
        if name is not None and value is not None and (key != "statusCode" or name not in out):
            out[name] = value


# ---------------------------------------------------------------------------------------------------
# Fast path (see `_fast_load`)

_FAST_PATH = True  # tests turn it off to compare with marshmallow alone


@dataclass(frozen=True, slots=True)
class _Plan:
    """The fields of one schema for the fast path: the top-level ones, and the members of `http` if any,
    each as the compiled loader's rules (`_rule_of`)."""

    fields: tuple[_loader.Rule, ...]
    http: tuple[_loader.Rule, ...] | None


def _plan_for(schema: Schema, keys: _Keys) -> _Plan:
    """The fast path's view of `schema`, from the same key tables `_canonical` uses."""
    camel = {name: key for key, name in keys.names.items() if key != name}
    camel.update({name: key for key, name in _HTTP_NAMES.items() if key != name[5:]})
    top: list[_loader.Rule] = []
    http: list[_loader.Rule] = []
    for name, field in schema.fields.items():
        if name == "http":
            continue
        member = name[5:] if name.startswith("http_") else None
        rule = _rule_of(field, member or name, camel.get(name), name, name in keys.blank_is_absent)
        (top if member is None else http).append(rule)
    return _Plan(tuple(top), tuple(http) if "http" in schema.fields else None)


# The ASCII characters an id may hold, read from the pattern itself (ID_PATTERN: one character class, repeated
# 1..ID_MAX_CHARS times), for the compiled loader's shortcut.
_ID_CHARACTERS = bytes(ID_RE.match(chr(code)) is not None for code in range(128))


def _rule_of(field: fields.Field[Any], key: str, camel: str | None, name: str, blank_is_absent: bool) -> _loader.Rule:
    """`field`'s check for the compiled loader (`_loader.Rule`): what `field._deserialize` accepts, and loads it to.

    Exact types on purpose, for fields and values alike: orjson only makes exact types (which keeps bool
    out of the numbers), and a new subclass of a field must get its own rule (else TypeError at import).
    """
    common = (key, camel, name, field.required, field.load_default, blank_is_absent)
    kind = type(field)
    if kind is Id:
        assert isinstance(field, Id)
        if field.pattern is not ID_RE:
            raise TypeError(f"{name}: an id field with a pattern of its own needs a rule of its own")
        return _loader.Rule(*common, _loader.ID, check=field.pattern.match, max_chars=ID_MAX_CHARS,
                            allowed=_ID_CHARACTERS)
    if kind is Upper:
        assert isinstance(field, Upper)
        if field.choices:
            return _loader.Rule(*common, _loader.UPPER_CHOICE, aliases=field.aliases, choices=field.choices)
        return _loader.Rule(*common, _loader.UPPER_TEXT, min_chars=field.min_chars, max_chars=field.max_chars)
    if kind is Text:
        assert isinstance(field, Text)
        return _loader.Rule(*common, _loader.TEXT, min_chars=field.min_chars, max_chars=field.max_chars)
    if kind is Time:
        return _loader.Rule(*common, _loader.TIME, check=parse_time)
    if kind is Number:
        assert isinstance(field, Number)
        return _loader.Rule(*common, _loader.NUMBER, integral_only=field.types == (int,), low=field.minimum,
                            high=field.maximum)
    if kind is JsonObject:
        return _loader.Rule(*common, _loader.OBJECT)
    raise TypeError(f"no fast check for {kind.__name__}: add one, or the fast path cannot be exact")


def _fast_load(plan: _Plan, message: dict[str, Any]) -> dict[str, Any] | None:
    """What `schema.load(_canonical(message, keys))` returns, when every field is plainly valid; else None.

    Why: marshmallow's per-field machinery (getters, error store, set_value) was about half of the
    worker's CPU, while the checks themselves are cheap; skipping it makes decoding ~2x faster.
    How: the same rules, read from the schema's own fields by `_plan_for` (limits, id pattern, choices,
    aliases, defaults, spellings; times through the same `parse_time`), so they cannot drift apart.
    Whenever it is not sure -- a value a field would reject, a key sent in both spellings, `http` that
    is not an object -- it returns None and marshmallow decides: marshmallow stays the validator of
    record, and every rejection reason is still its own.
    Guarantee: tests/unit/processing/test_fast_path.py generates valid and near-valid messages (both
    spellings, every time form, boundary lengths, ...) and checks that an answer from here is equal to
    marshmallow's, value for value and type for type; that decode_span / decode_log give the same
    Decoded or Rejected with `_FAST_PATH` on and off; and that only both-spellings messages fall back
    when marshmallow would accept them.
    """
    return _loader.fields(plan.fields, plan.http, message)


_SPAN_PLAN = _plan_for(_SPAN_SCHEMA, _SPAN_KEYS)
_LOG_PLAN = _plan_for(_LOG_SCHEMA, _LOG_KEYS)


# ---------------------------------------------------------------------------------------------------
# Reasons


def _error_lines(errors: dict[str, Any], message: dict[str, Any]) -> list[str]:
    """marshmallow's error dict as `field: problem` lines, naming keys as the producer sent them."""
    return [f"{_sent_name(message, name)}: {'; '.join(str(item).rstrip('.') for item in problems)}"
            for name, problems in errors.items()]


def _sent_name(message: dict[str, Any], name: str) -> str:
    """`name` as the producer spelled it: camelCase if that is what they sent, http_x as http.x."""
    if name.startswith("http_"):
        http = message.get("http")
        inner = name[5:]
        if isinstance(http, dict) and inner not in http and _CAMEL.get(inner) in http:
            inner = _CAMEL[inner]
        return f"http.{inner}"
    camel = _CAMEL.get(name)
    return camel if camel is not None and name not in message and camel in message else name


def _reason(lines: list[str]) -> str:
    text = "; ".join(sorted(lines))
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _parse(raw: object, max_bytes: int) -> dict[str, Any] | Rejected:
    """The message as a JSON object, or why it is not one."""
    if raw is None:
        return Rejected("empty message (null value)")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, bytes | bytearray | memoryview):
        return Rejected(f"message is not bytes but {type(raw).__name__}")
    size = len(raw) if not isinstance(raw, memoryview) else raw.nbytes
    if size > max_bytes:
        return Rejected(f"message too large: {size} bytes > {max_bytes}")
    if size == 0:
        return Rejected("empty message")
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejected(f"not valid JSON: {exc}")
    if not isinstance(message, dict):
        return Rejected(f"not a JSON object but a JSON {_json_type(message)}")
    return message


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


def _loaded(schema: Schema, keys: _Keys, plan: _Plan, raw: object,
            max_bytes: int) -> tuple[dict[str, Any], dict[str, Any]] | Rejected:
    """(loaded fields, parsed message) of `raw`, or why it is not a valid one.

    The fast path first: `_fast_load` on the parsed message, parsed and loaded in one compiled call
    (`_loader.message`). What it does not answer for (not bytes, not a JSON object, not plainly valid) is
    parsed again and marshmallow alone decides: the fast path has already had its say.
    """
    if _FAST_PATH and (fast := _loader.message(raw, max_bytes, plan.fields, plan.http)) is not None:
        return fast
    message = _parse(raw, max_bytes)
    if isinstance(message, Rejected):
        return message
    try:
        loaded: dict[str, Any] = schema.load(_canonical(message, keys))
    except ValidationError as exc:
        errors = exc.messages if isinstance(exc.messages, dict) else {"message": exc.messages}
        return Rejected(_reason(_error_lines(errors, message)))
    return loaded, message


def _internal_error(exc: Exception) -> Rejected:
    # Only a bug gets here; the message still goes to the dead-letter destination instead of
    # stopping the consumer, and the reason says it was our fault.
    return Rejected(_reason([f"internal error while decoding: {type(exc).__name__}: {exc}"]))


# ---------------------------------------------------------------------------------------------------
# Spans


def decode_span(raw: bytes, *, topic: str, partition: int, offset: int, now_ms: int,
                max_bytes: int = DEFAULT_MAX_BYTES) -> Decoded | Rejected:
    """Validate one `apm.spans` message; doc_id is `trace_id:span_id`. Never raises.

    topic / partition / offset are accepted for symmetry with `decode_log`; span ids are unique already.
    """
    try:
        return _decode_span(raw, now_ms, max_bytes)
    except Exception as exc:  # the contract is "never raise"
        return _internal_error(exc)


def _decode_span(raw: bytes, now_ms: int, max_bytes: int) -> Decoded | Rejected:
    loaded = _loaded(_SPAN_SCHEMA, _SPAN_KEYS, _SPAN_PLAN, raw, max_bytes)
    if isinstance(loaded, Rejected):
        return loaded
    span, message = loaded
    timing = _span_timing(span, message, now_ms)
    if isinstance(timing, Rejected):
        return timing
    start_ms, end_ms, duration_ms = timing
    document = span_document(span, start_ms, end_ms, duration_ms, now_ms)
    return Decoded(span_doc_id(span["trace_id"], span["span_id"]), document)


def _span_timing(span: dict[str, Any], message: dict[str, Any],
                 now_ms: int) -> tuple[float, float, float] | Rejected:
    """(start, end, duration) in ms: end_time wins when given, else start_time + duration_ms."""
    start_ms, end_ms, duration_ms = span["start_time"], span["end_time"], span["duration_ms"]
    problems = []
    if problem := time_problem(start_ms, now_ms):
        problems.append(f"{_sent_name(message, 'start_time')}: {problem}")
    if end_ms is not None:
        if problem := time_problem(end_ms, now_ms):
            problems.append(f"{_sent_name(message, 'end_time')}: {problem}")
        elif end_ms < start_ms:
            problems.append(f"{_sent_name(message, 'end_time')}: before start_time")
        duration_ms = round(end_ms - start_ms, 3)  # drop float noise from the subtraction
    elif duration_ms is not None:
        duration_ms = float(duration_ms)
        end_ms = start_ms + duration_ms
        if not problems and end_ms > now_ms + MAX_FUTURE_MS:
            problems.append(f"{_sent_name(message, 'duration_ms')}: ends more than 1 day in the future")
    else:
        problems.append("end_time or duration_ms: one of them is required")
    return Rejected(_reason(problems)) if problems else (start_ms, end_ms, duration_ms)


# ---------------------------------------------------------------------------------------------------
# Logs


def decode_log(raw: bytes, *, topic: str, partition: int, offset: int, now_ms: int,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Decoded | Rejected:
    """Validate one `apm.logs` message. Never raises.

    doc_id is the producer's `event_id` when given, else `topic-partition-offset-<hash of the bytes>`:
    either way a re-delivered message gets the same id, so indexing it twice does not duplicate it, and
    a different log at the same coordinates (a topic recreated, a cluster migrated) never takes the id of
    an old one.
    """
    try:
        return _decode_log(raw, topic, partition, offset, now_ms, max_bytes)
    except Exception as exc:  # the contract is "never raise"
        return _internal_error(exc)


def _decode_log(raw: bytes, topic: str, partition: int, offset: int, now_ms: int,
                max_bytes: int) -> Decoded | Rejected:
    loaded = _loaded(_LOG_SCHEMA, _LOG_KEYS, _LOG_PLAN, raw, max_bytes)
    if isinstance(loaded, Rejected):
        return loaded
    log = loaded[0]
    if problem := time_problem(log["timestamp"], now_ms):
        return Rejected(f"timestamp: {problem}")
    kafka = {"topic": topic, "partition": partition, "offset": offset}
    document = log_document(log, log["timestamp"], LEVELS[log["level"]], now_ms, kafka)
    return Decoded(log["event_id"] or f"{topic}-{partition}-{offset}-{_content_hash(raw)}", document)


def _content_hash(raw: bytes | str) -> str:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Records: the decoder contract of the flow table (`panopticon.flow`)


def decode_span_record(raw: bytes, *, topic: str, partition: int, offset: int, now_ms: int,
                       max_bytes: int = DEFAULT_MAX_BYTES) -> DecodedRecord:
    """One `apm.spans` record: exactly one span."""
    return (decode_span(raw, topic=topic, partition=partition, offset=offset, now_ms=now_ms, max_bytes=max_bytes),)


def decode_log_record(raw: bytes, *, topic: str, partition: int, offset: int, now_ms: int,
                      max_bytes: int = DEFAULT_MAX_BYTES) -> DecodedRecord:
    """One `apm.logs` record: exactly one log."""
    return (decode_log(raw, topic=topic, partition=partition, offset=offset, now_ms=now_ms, max_bytes=max_bytes),)
