"""The decoding fast path (`_fast_load`, "Fast path" in schemas.py) never changes an answer.

marshmallow is the validator of record. The fast path may only answer for a message marshmallow would
load, and must then give exactly marshmallow's dict (==, and the same type for every value, so 250 stays
an int and 250.0 a float); for anything else it returns None and marshmallow decides. The properties:

* fast answer => identical to `schema.load(_canonical(message))`, which must have succeeded;
* `decode_span` / `decode_log` give identical results (Decoded or Rejected) with the fast path on or off;
* for valid messages sent in one spelling per key, the fast path does answer (it is not a no-op), and
  it answers for the traffic of `panopticon.sample` and of the integration tests' `make_messages`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from panopticon import sample
from panopticon.model import KINDS, LEVELS, STATUSES
from panopticon.model.times import MIN_TIME_MS
from panopticon.processing import schemas
from panopticon.processing.schemas import Decoded, Rejected, decode_log, decode_span
from tests.integration.traffic import make_messages
from tests.unit.processing.test_schemas import LOG, NOW, SPAN, SPAN_CAMEL, json_values

DAY_MS = 86_400_000
HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the comparison ------------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """== with the same type at every level (1 == 1.0 == True for plain ==)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):
        return same(dataclasses.asdict(a), dataclasses.asdict(b))
    return a == b


@contextmanager
def slow_path() -> Iterator[None]:
    """marshmallow alone, as before the fast path existed."""
    schemas._FAST_PATH = False
    try:
        yield
    finally:
        schemas._FAST_PATH = True


PLANS = {
    "span": (schemas._SPAN_SCHEMA, schemas._SPAN_KEYS, schemas._SPAN_PLAN, decode_span, "apm.spans"),
    "log": (schemas._LOG_SCHEMA, schemas._LOG_KEYS, schemas._LOG_PLAN, decode_log, "apm.logs"),
}


def equivalent(kind: str, message: dict) -> dict | None:
    """Check every property for one message; returns the fast path's answer (None: it left it to marshmallow).

    It gives up on a message marshmallow loads only when a field is sent in both spellings.
    """
    schema, keys, plan, decode, topic = PLANS[kind]
    fast = schemas._fast_load(plan, message)
    try:
        slow = schema.load(schemas._canonical(message, keys))
    except ValidationError:
        slow = None
    if fast is not None:
        assert slow is not None, f"fast path accepted what marshmallow rejects: {message!r}"
        assert same(fast, slow), (fast, slow)
    elif slow is not None:
        assert not one_spelling(message), f"fast path gave up on a valid message: {message!r}"

    raw = orjson.dumps(message)
    position = {"topic": topic, "partition": 1, "offset": 42, "now_ms": NOW}
    result = decode(raw, **position)
    with slow_path():
        before = decode(raw, **position)
    assert same(result, before), (result, before)
    assert isinstance(result, Decoded | Rejected)
    return fast


def one_spelling(message: dict) -> bool:
    """No field sent both as snake_case and camelCase (the one shape the fast path leaves to marshmallow)."""
    http = message.get("http")
    return (not any(snake in message and camel in message for snake, camel in schemas._CAMEL.items())
            and not (isinstance(http, dict) and "status_code" in http and "statusCode" in http))


# --- valid messages ------------------------------------------------------------------------------------

ID_CHARS = "".join(c for c in map(chr, range(0x21, 0x7F)) if c != ":")


def sized_text(low: int, high: int, alphabet: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    """Any text of low..high characters, often exactly at a boundary (long ones repeat one character)."""
    chars = alphabet if alphabet is not None else st.characters(exclude_categories=("Cs",))
    boundaries = [n for n in {low, max(low, 1), high} if n]
    return st.one_of(
        st.text(chars, min_size=low, max_size=min(high, 40)),
        st.builds(lambda char, n: char * n, chars, st.sampled_from(boundaries)),
        *([st.just("")] if low == 0 else []),
    )


ids = st.one_of(sized_text(1, 128, st.sampled_from(ID_CHARS)),
                st.integers(0, 2**128 - 1).map(lambda n: f"{n:032x}"))


def any_case(choices: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(choices), st.sampled_from([str.upper, str.lower, str.title, str.swapcase])
                     ).map(lambda pair: pair[1](pair[0]))


@st.composite
def times(draw: st.DrawFn, epoch_ms: float) -> Any:
    """`epoch_ms` as a producer might send it: epoch ms (int, float, numeric string) or ISO 8601."""
    form = draw(st.sampled_from(["int", "float", "numeric", "iso"]))
    if form == "int":
        return int(epoch_ms)
    if form == "float":
        return float(epoch_ms)
    if form == "numeric":
        return str(int(epoch_ms)) if draw(st.booleans()) else f"{epoch_ms:.3f}"
    offset = draw(st.sampled_from([None, 0, 0, 540, -300, 330, 345, 840, -720]))  # minutes; None = naive
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    if offset is not None:
        moment = moment.astimezone(timezone(timedelta(minutes=offset)))
    digits = draw(st.sampled_from([0, 1, 2, 3, 3, 6, 7]))
    fraction = f"{moment.microsecond:06d}0"[:digits]
    text = moment.strftime("%Y-%m-%d") + draw(st.sampled_from("T T ")) + moment.strftime("%H:%M:%S")
    text += f".{fraction}" if digits else ""
    if offset is None:
        return text
    if offset == 0 and draw(st.booleans()):
        return text + "Z"
    return text + moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]


epochs = st.one_of(
    st.integers(NOW - DAY_MS, NOW + DAY_MS // 2),  # the common case: recent
    st.integers(MIN_TIME_MS, NOW + DAY_MS),  # any plausible time, boundaries included
    st.floats(NOW - DAY_MS, NOW, allow_nan=False).map(lambda ms: round(ms, 3)),  # fractional ms
)
durations = st.one_of(st.integers(0, 10**7), st.floats(0, 10**7, allow_nan=False), st.just(0), st.just(0.0))
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=4)


def spelled(draw: st.DrawFn, snake: str) -> str:
    camel = schemas._CAMEL.get(snake)
    return camel if camel and draw(st.booleans()) else snake


def optional(draw: st.DrawFn, message: dict, key: str, values: st.SearchStrategy, *absent: Any) -> None:
    """Set `key` to a drawn value, or to one of the `absent` spellings (... = leave the key out)."""
    value = draw(st.one_of(values, st.sampled_from(absent))) if absent else draw(values)
    if value is not ...:
        message[key] = value


@st.composite
def valid_spans(draw: st.DrawFn) -> dict:
    message: dict = {}
    message[spelled(draw, "trace_id")] = draw(ids)
    message[spelled(draw, "span_id")] = draw(ids)
    optional(draw, message, spelled(draw, "parent_span_id"), ids, ..., None, "")
    message[spelled(draw, "service_name")] = draw(sized_text(1, 256))
    optional(draw, message, "environment", sized_text(1, 256), ..., None)
    message["name"] = draw(sized_text(1, 1024))
    optional(draw, message, "kind", any_case(KINDS), ..., None)
    optional(draw, message, "status", any_case(STATUSES), ..., None)
    start = draw(epochs)
    message[spelled(draw, "start_time")] = draw(times(start))
    duration = draw(durations)
    shape = draw(st.sampled_from(["end", "duration", "duration", "both", "neither"]))
    if shape in ("end", "both"):
        message[spelled(draw, "end_time")] = draw(times(start + duration))
    if shape in ("duration", "both"):
        message[spelled(draw, "duration_ms")] = duration
    http = draw(st.sampled_from(["absent", "null", "partial", "full"]))
    if http == "null":
        message["http"] = None
    elif http != "absent":
        members: dict = {}
        full = http == "full"
        optional(draw, members, "method", sized_text(1, 32) | st.sampled_from(["GET", "post", "Patch"]),
                 *(() if full else (..., None)))
        optional(draw, members, "route", sized_text(0, 256), *(() if full else (..., None)))
        optional(draw, members, draw(st.sampled_from(["status_code", "statusCode"])), st.integers(100, 599),
                 *(() if full else (..., None)))
        if draw(st.booleans()):
            members["extra"] = draw(json_values)
        message["http"] = members
    optional(draw, message, "attributes", json_objects, ..., None)
    if draw(st.booleans()):
        message[draw(st.sampled_from(["tags", "resource", "http_method", "Name", "statusCode"]))] = draw(json_values)
    return message


@st.composite
def valid_logs(draw: st.DrawFn) -> dict:
    message: dict = {}
    message["timestamp"] = draw(times(draw(epochs)))
    message[spelled(draw, "service_name")] = draw(sized_text(1, 256))
    optional(draw, message, "environment", sized_text(1, 256), ..., None)
    message["level"] = draw(any_case((*LEVELS, "WARNING")))
    message["message"] = draw(sized_text(0, 32768))
    optional(draw, message, spelled(draw, "trace_id"), ids, ..., None, "")
    optional(draw, message, spelled(draw, "span_id"), ids, ..., None, "")
    optional(draw, message, "attributes", json_objects, ..., None)
    optional(draw, message, spelled(draw, "event_id"), sized_text(1, 128), ..., None, "")
    if draw(st.booleans()):
        message[draw(st.sampled_from(["kafka", "host", "Level", "startTime"]))] = draw(json_values)
    return message


@HYPOTHESIS
@given(message=valid_spans())
@example(message=SPAN)
@example(message=SPAN_CAMEL)
def test_valid_spans(message: dict) -> None:
    fast = equivalent("span", message)
    assert fast is not None, "a valid span in one spelling per key must take the fast path"


@HYPOTHESIS
@given(message=valid_logs())
@example(message=LOG)
def test_valid_logs(message: dict) -> None:
    fast = equivalent("log", message)
    assert fast is not None, "a valid log in one spelling per key must take the fast path"


# --- near-valid messages -------------------------------------------------------------------------------

# Values just past a rule, or normalised in a way that is easy to get wrong.
tricky_values = st.sampled_from([
    None, "", " ", "a:b", "a b", "x" * 129, "é" * 257, "n" * 1025, "m" * 32769, "ß" * 17, "ß" * 16, "ſerver",
    "WARNING", "warning", "Warn", "NOTICE", "server", "ok", "error", "BACKEND", True, False, 0, -1, -0.0, 0.5,
    99, 100, 599, 600, 200.0, 1e300, 2**63, "200", "12", 1_714_564_799, 1_714_564_799_100, "1714564799100",
    "1999-12-31T23:59:59Z", "2024-05-01T11:59:59.100Z", "2024-05-01", "2024-05-01T11:59:59+09:00",
    "2024-05-01T11:59:59.1001234Z", "2024-13-01T00:00:00Z", "yesterday", [], {}, {"method": "GET"}, ["GET"],
])


# Length limits of the message contract: each is tried at the limit and one past it.
SPAN_LIMITS = {"trace_id": 128, "traceId": 128, "span_id": 128, "parent_span_id": 128, "service_name": 256,
               "serviceName": 256, "environment": 256, "name": 1024, "http.method": 32, "http.route": 256}
LOG_LIMITS = {"service_name": 256, "environment": 256, "message": 32768, "trace_id": 128, "span_id": 128,
              "event_id": 128, "eventId": 128}


@st.composite
def near_valid(draw: st.DrawFn, valid: st.SearchStrategy[dict], keys: list[str], limits: dict[str, int]) -> dict:
    """A valid message with 1-3 fields (maybe inside http, maybe the other spelling) changed or removed."""
    message = draw(valid)
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:  # a length at or just past a limit
            key = draw(st.sampled_from(sorted(limits)))
            value = draw(st.sampled_from("aé9ß")) * (limits[key] + draw(st.integers(0, 1)))
        else:
            key = draw(st.sampled_from([*message, *keys]))
            value = draw(st.one_of(tricky_values, json_values, st.just(...)))
        target = message
        if key.startswith("http."):
            target = message["http"] = dict(message["http"]) if isinstance(message.get("http"), dict) else {}
            key = key[5:]
        if value is ...:
            target.pop(key, None)
        else:
            target[key] = value
    return message


SPAN_FIELDS = [*schemas._SPAN_KEYS.names, "http.method", "http.route", "http.status_code", "http.statusCode"]
LOG_FIELDS = list(schemas._LOG_KEYS.names)


@HYPOTHESIS
@given(message=near_valid(valid_spans(), SPAN_FIELDS, SPAN_LIMITS))
def test_near_valid_spans(message: dict) -> None:
    equivalent("span", message)


@HYPOTHESIS
@given(message=near_valid(valid_logs(), LOG_FIELDS, LOG_LIMITS))
def test_near_valid_logs(message: dict) -> None:
    equivalent("log", message)


@pytest.mark.parametrize(("kind", "message"), [
    pytest.param("span", {**SPAN, "serviceName": "camel"}, id="span-both-spellings"),
    pytest.param("span", {**SPAN, "service_name": None, "serviceName": "camel"}, id="span-null-snake-camel"),
    pytest.param("span", {**SPAN, "parent_span_id": "", "parentSpanId": "p1"}, id="span-blank-snake-camel"),
    pytest.param("span", {**SPAN, "http": {"status_code": None, "statusCode": 201}}, id="http-both-codes"),
    pytest.param("span", {**SPAN, "http": "GET /"}, id="http-not-object"),
    pytest.param("span", {**SPAN, "http": {"method": "ß" * 17}}, id="method-longer-once-upper"),
    pytest.param("span", {**SPAN, "kind": "ſerver"}, id="kind-unicode-upper"),
    pytest.param("span", {**SPAN, "start_time": 1_714_564_799}, id="epoch-seconds"),
    pytest.param("span", {**SPAN, "end_time": "2024-05-01T11:59:59.000Z"}, id="end-before-start"),
    pytest.param("log", {**LOG, "traceId": "t2"}, id="log-both-spellings"),
    pytest.param("log", {**LOG, "level": "warning"}, id="log-warning"),
    pytest.param("log", {**LOG, "event_id": "", "eventId": "e1"}, id="log-blank-snake-camel"),
    pytest.param("log", {**LOG, "timestamp": NOW + DAY_MS + 1}, id="log-future"),
])
def test_unusual_shapes(kind: str, message: dict) -> None:
    equivalent(kind, message)


def test_fast_path_only_falls_back_for_both_spellings_or_invalid() -> None:
    assert schemas._fast_load(schemas._SPAN_PLAN, {**SPAN, "serviceName": "camel"}) is None
    assert schemas._fast_load(schemas._SPAN_PLAN, {**SPAN, "http": {"method": 1}}) is None
    assert schemas._fast_load(schemas._SPAN_PLAN, SPAN) is not None


# --- real traffic --------------------------------------------------------------------------------------


def test_sample_traffic_takes_the_fast_path() -> None:
    messages = list(sample.generate(150, seed=11, start_ms=NOW - 60_000, spread_ms=30_000))
    assert {m.kind for m in messages} == {"span", "log"}
    for message in messages:
        assert equivalent(message.kind, orjson.loads(message.encode())) is not None, message.body


def test_integration_traffic_takes_the_fast_path() -> None:
    messages, produced = make_messages("fp", 1000, bad_ratio=0.05, start_ms=NOW - 60_000, error_ratio=0.1)
    taken = 0
    for kind, raw in messages:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(message, dict) and equivalent(kind, message) is not None:
            taken += 1
    assert taken == produced.valid
