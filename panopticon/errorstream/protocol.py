"""What travels on the live error stream: cursors, envelopes, client filters, WebSocket frames. Pure code.

One envelope is built per error log, by the relay, and published once to Redis; each `ws` process
parses it once, and encodes it once as a WebSocket text frame that is written, byte for byte, to
every socket whose filter accepts it. So the cost per socket is a filter test and a socket write.

Envelope (the JSON text a client receives):
    {"event": "error-log", "cursor": "1717000000123.Y2FydC0xMjM", "id": "<doc id>", "log": {<logs-apm document>}}
The log document carries its error group: `log.fingerprint`, and `log.new_group` (true for the first log of a
group ever stored). Two more events travel on the same channel and sockets: `alert` (a state change of an alert
rule, published by the alert tasks; `alert_envelope`) and, built by each `ws` process for its `collapse=1`
clients, `error-group` (how many more logs of a group arrived since the last summary; `Collapser`).

A cursor is `<ingested_at epoch ms>.<doc id, base64url>`: the time the log was stored and the log itself,
so it names one position exactly. A `ws` process places it in the publish order (which every `ws`
process shares, see `hub.RecentWindow`) to send a reconnecting client exactly what it has not seen;
when the position is too old to be known, the time bounds the read from `logs-apm`. Logs sent from
`logs-apm` carry the same kind of cursor. Cursors of earlier versions (`<ms>-<partition>:<offset>`, and
`<ms>` alone) are still accepted as `since`, as times.

Every envelope read from Redis is checked before fan-out (`live_message`): anyone who can produce to
the error topic or publish to the channel can send anything, and one bad message must cost a counter,
never the feed.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Any

import orjson
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates

from panopticon.model import ALERT_STATES, ERROR_LEVELS, FINGERPRINT_RE, FINGERPRINT_RULE, LEVELS
from panopticon.model.times import MAX_FUTURE_MS, MIN_TIME_MS, iso_to_ms

_CURSOR = re.compile(r"^(\d{10,16})\.([A-Za-z0-9_-]{1,700})$")
_OLD_CURSOR = re.compile(r"^(\d{10,16})(?:-(\d{1,9}):(\d{1,19}))?$")
MAX_ID_CHARS = 512


# --- cursors and times ------------------------------------------------------------------------------
def order_key(channel: str) -> str:
    """The Redis list in which the relay keeps the publish order of `channel` (see `relay`)."""
    return f"{channel}:order"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def make_cursor(ingested_ms: int, doc_id: str) -> str:
    """`<ms>.<id>`: URL-safe as it is, so a client can pass it back as since= without escaping."""
    return f"{ingested_ms}.{_b64(doc_id)}"


@dataclass(frozen=True, slots=True)
class Since:
    """Where a reconnecting client wants to resume: a time, and the log it saw last when it gave a cursor."""

    ms: int
    doc_id: str | None = None


def parse_since(text: str) -> Since:
    """A cursor from an envelope, epoch milliseconds, or an ISO 8601 time; ValueError says which is wrong."""
    text = text.strip()
    match = _CURSOR.match(text)
    if match:
        try:
            doc_id = _unb64(match.group(2))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            doc_id = ""
        if doc_id and len(doc_id) <= MAX_ID_CHARS:
            return Since(int(match.group(1)), doc_id)
    else:
        old = _OLD_CURSOR.match(text)
        if old:  # `<ms>` or `<ms>-<partition>:<offset>` (earlier versions): the time is what we can use
            return Since(int(old.group(1)))
        try:
            return Since(iso_to_ms(text))
        except ValueError:
            pass
    raise ValueError(
        f"expected a cursor (like 1717000000123.Y2FydC0x), epoch milliseconds or an ISO 8601 time, got {text[:80]!r}")


# --- filters ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClientFilter:
    """What one client asked for; None means any. Applied to live messages and to the gap fill alike."""

    services: frozenset[str] | None = None
    environments: frozenset[str] | None = None
    min_level: int = LEVELS["ERROR"]
    groups: frozenset[str] | None = None

    def matches(self, service: str | None, environment: str | None, level_num: int,
                fingerprint: str | None = None) -> bool:
        if level_num < self.min_level:
            return False
        if self.groups is not None and fingerprint not in self.groups:
            return False
        if self.services is not None and service not in self.services:
            return False
        return self.environments is None or environment in self.environments

    def wants_alert(self, service: str | None, environment: str | None) -> bool:
        """An alert reaches a client unless the client asked for other services or environments; a rule that
        names neither reaches everyone (levels and groups are about logs, not alerts)."""
        if self.services is not None and service is not None and service not in self.services:
            return False
        return self.environments is None or environment is None or environment in self.environments

    @property
    def levels(self) -> list[str]:
        return [name for name in ERROR_LEVELS if LEVELS[name] >= self.min_level]


def _names(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


class StreamParamsSchema(Schema):
    """Query string of `/ws/error-logs`: ?service=a,b&environment=prod&level=FATAL&group=<fingerprint>,...
    &collapse=1&since=<cursor|time>&token=..."""

    class Meta:
        unknown = EXCLUDE  # checked by `parse_stream_params`, which names the unknown parameter

    service = fields.String(load_default=None)
    environment = fields.String(load_default=None)
    level = fields.String(load_default="ERROR")
    since = fields.String(load_default=None)
    token = fields.String(load_default=None)
    group = fields.String(load_default=None)
    collapse = fields.String(load_default="0")

    @validates("group")
    def _group(self, value: str | None, **_kwargs: Any) -> None:
        if value is not None:
            names = _names(value)
            if not names or len(names) > MAX_GROUPS or not all(FINGERPRINT_RE.match(n) for n in names):
                raise ValidationError(f"{FINGERPRINT_RULE}, comma separated (1 to {MAX_GROUPS})")

    @validates("collapse")
    def _collapse(self, value: str, **_kwargs: Any) -> None:
        if value.strip().lower() not in _SWITCH:
            raise ValidationError("must be 1 or 0 (true or false)")

    @validates("level")
    def _level(self, value: str, **_kwargs: Any) -> None:
        if value.strip().upper() not in ERROR_LEVELS:
            raise ValidationError(f"must be one of {', '.join(ERROR_LEVELS)} (the stream carries errors only)")

    @validates("since")
    def _since(self, value: str | None, **_kwargs: Any) -> None:
        if value is not None:
            try:
                parse_since(value)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None

    @validates("service")
    def _service(self, value: str | None, **_kwargs: Any) -> None:
        if value is not None and not _names(value):
            raise ValidationError("must name at least one service")

    @validates("environment")
    def _environment(self, value: str | None, **_kwargs: Any) -> None:
        if value is not None and not _names(value):
            raise ValidationError("must name at least one environment")


@dataclass(frozen=True, slots=True)
class StreamParams:
    filter: ClientFilter
    since: Since | None
    collapse: bool = False


MAX_GROUPS = 100
_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def parse_stream_params(args: dict[str, str]) -> StreamParams:
    """Validate the query string; raises ValidationError with one message per wrong parameter."""
    schema = StreamParamsSchema()
    problems: dict[str, Any] = {name: ["unknown parameter"] for name in set(args) - set(schema.fields)}
    problems.update(schema.validate(args))
    if problems:
        raise ValidationError(problems)
    loaded = schema.load(args)
    service, environment, group = loaded["service"], loaded["environment"], loaded["group"]
    return StreamParams(
        ClientFilter(
            services=frozenset(_names(service)) if service is not None else None,
            environments=frozenset(_names(environment)) if environment is not None else None,
            min_level=LEVELS[loaded["level"].strip().upper()],
            groups=frozenset(_names(group)) if group is not None else None,
        ),
        parse_since(loaded["since"]) if loaded["since"] is not None else None,
        _SWITCH[loaded["collapse"].strip().lower()],
    )


# --- envelopes --------------------------------------------------------------------------------------
def envelope(doc_id: str, cursor: str, log: dict[str, Any]) -> bytes:
    return orjson.dumps({"event": "error-log", "cursor": cursor, "id": doc_id, "log": log})


def notice(event: str, **values: Any) -> bytes:
    """A control message: `dropped` (with count), `caught-up`, `ping`, `error-group` (a collapse summary)."""
    return orjson.dumps({"event": event, **values})


def alert_envelope(change_id: str, alert: dict[str, Any]) -> bytes:
    """What the alert tasks publish on the error channel for one state change of a rule (see README, "Alerting")."""
    return orjson.dumps({"event": "alert", "id": change_id, "alert": alert})


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One error log (or alert) as a `ws` process holds it: what filters and summaries need, and the frame every
    socket is sent."""

    doc_id: str
    cursor: str
    ingested_ms: int
    service: str | None
    environment: str | None
    level_num: int
    frame: bytes
    fingerprint: str | None = None
    new_group: bool = False
    message: str | None = None  # the start of the log's message, for collapse summaries
    kind: str = "error-log"  # or "alert"


class InvalidMessage(ValueError):
    """A published envelope that must not reach any socket; `field` says what was wrong (the metric's label)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def _text_or_none(log: dict[str, Any], name: str) -> str | None:
    value = log.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidMessage(name, f"expected a string or null, got {type(value).__name__}")
    return value


def live_message(raw: bytes, *, max_bytes: int = 4 * 1024 * 1024, now_ms: int | None = None,
                 alerts: bool = False) -> LiveMessage:
    """Parse and check a published envelope once; InvalidMessage names the first wrong field. With `alerts`, an
    `alert` envelope is accepted too (the hub's channel carries both; a stored log is never one).

    Checked: the size, JSON, the event, the id, the cursor (and a plausible time in it), that `log` is an
    object, and the types of every field a filter or a client relies on: service_name, environment,
    level (a known level name), level_num, trace_id, span_id, fingerprint and new_group.
    """
    if len(raw) > max_bytes:
        raise InvalidMessage("size", f"{len(raw)} bytes, more than {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage("json", str(exc)[:100]) from None
    if not isinstance(data, dict):
        raise InvalidMessage("json", f"expected an object, got {type(data).__name__}")
    if data.get("event") == "alert" and alerts:
        return _alert_message(data, raw, now_ms)
    if data.get("event") != "error-log":
        raise InvalidMessage("event", f"not an error-log envelope: event={str(data.get('event'))[:40]!r}")
    doc_id = data.get("id")
    if not isinstance(doc_id, str) or not 0 < len(doc_id) <= MAX_ID_CHARS:
        raise InvalidMessage("id", f"expected a string of 1 to {MAX_ID_CHARS} characters")
    cursor = data.get("cursor")
    try:
        since = parse_since(cursor) if isinstance(cursor, str) else None
    except ValueError:
        since = None
    if since is None:
        raise InvalidMessage("cursor", "expected a cursor string")
    if since.ms < MIN_TIME_MS or (now_ms is not None and since.ms > now_ms + MAX_FUTURE_MS):
        raise InvalidMessage("cursor", f"implausible time {since.ms}")
    log = data.get("log")
    if not isinstance(log, dict):
        raise InvalidMessage("log", "expected an object")
    service, environment = _text_or_none(log, "service_name"), _text_or_none(log, "environment")
    _text_or_none(log, "trace_id")
    _text_or_none(log, "span_id")
    level = log.get("level")
    if not isinstance(level, str) or level.upper() not in LEVELS:
        raise InvalidMessage("level", f"expected one of {', '.join(LEVELS)}")
    level_num = log.get("level_num", LEVELS[level.upper()])
    if not isinstance(level_num, int) or isinstance(level_num, bool) or not 0 <= level_num <= 100:
        raise InvalidMessage("level_num", "expected an integer from 0 to 100")
    fingerprint = _text_or_none(log, "fingerprint")
    if fingerprint is not None and not FINGERPRINT_RE.match(fingerprint):
        raise InvalidMessage("fingerprint", FINGERPRINT_RULE)
    new_group = log.get("new_group", False)
    if not isinstance(new_group, bool) and new_group is not None:
        raise InvalidMessage("new_group", "expected true, false or null")
    message = log.get("message")
    return LiveMessage(doc_id, str(cursor), since.ms, service, environment, level_num, text_frame(raw), fingerprint,
                       bool(new_group), message[:SUMMARY_MESSAGE_CHARS] if isinstance(message, str) else None)


SUMMARY_MESSAGE_CHARS = 500


def _alert_message(data: dict[str, Any], raw: bytes, now_ms: int | None) -> LiveMessage:
    """A published `alert` envelope, checked; InvalidMessage names the first wrong field."""
    change_id = data.get("id")
    if not isinstance(change_id, str) or not 0 < len(change_id) <= MAX_ID_CHARS:
        raise InvalidMessage("id", f"expected a string of 1 to {MAX_ID_CHARS} characters")
    alert = data.get("alert")
    if not isinstance(alert, dict):
        raise InvalidMessage("alert", "expected an object")
    if alert.get("state") not in ALERT_STATES:
        raise InvalidMessage("state", f"expected one of {', '.join(ALERT_STATES)}")
    for name in ("rule", "service_name", "environment", "at"):
        _text_or_none(alert, name)
    try:
        at_ms = iso_to_ms(alert["at"]) if isinstance(alert.get("at"), str) else None
    except ValueError:
        at_ms = None
    if at_ms is None or at_ms < MIN_TIME_MS or (now_ms is not None and at_ms > now_ms + MAX_FUTURE_MS):
        raise InvalidMessage("at", "expected a plausible ISO 8601 time")
    return LiveMessage(change_id, "", at_ms, alert.get("service_name"), alert.get("environment"), LEVELS["FATAL"],
                       text_frame(raw), kind="alert")


# --- websocket frames -------------------------------------------------------------------------------
# Server frames are not masked (RFC 6455 5.1), so one encoding serves every socket. Compression
# (permessage-deflate) is turned off at the handshake for the same reason.
PING_FRAME = b"\x89\x00"


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (opcode 0x1) carrying `payload` (UTF-8 JSON)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload
