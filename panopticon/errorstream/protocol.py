"""What travels on the live error stream: cursors, envelopes, client filters, WebSocket frames. Pure code.

One envelope is built per error log, by the relay, and published once to Redis; each `ws` process
parses it once, and encodes it once as a WebSocket text frame that is written, byte for byte, to
every socket whose filter accepts it. So the cost per socket is a filter test and a socket write.

Envelope (the JSON text a client receives):
    {"event": "error-log", "cursor": "1717000000123-2:345", "id": "<doc id>", "log": {<logs-apm document>}}

A cursor is `<ingested_at epoch ms>-<partition>:<offset>`: the partition and offset of the message on
`apm.logs.error`, prefixed with the time the log was stored, so a client that reconnects with
`since=<cursor>` can be sent what it missed from `logs-apm` (which knows times, not Kafka offsets).
Logs sent from `logs-apm` carry a cursor that is the time alone; every cursor is a valid `since`.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import orjson
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates

from panopticon.model import ERROR_LEVELS, LEVELS
from panopticon.model.times import iso_to_ms

_CURSOR = re.compile(r"^(\d{10,16})(?:-(\d{1,9}):(\d{1,19}))?$")


# --- cursors and times ------------------------------------------------------------------------------
def make_cursor(ingested_ms: int, partition: int | None = None, offset: int | None = None) -> str:
    if partition is None or offset is None:
        return str(ingested_ms)
    return f"{ingested_ms}-{partition}:{offset}"


@dataclass(frozen=True, slots=True)
class Since:
    """Where a reconnecting client wants to resume: a time, and the exact cursor when it gave one."""

    ms: int
    cursor: str | None = None


def parse_since(text: str) -> Since:
    """A cursor from an envelope, epoch milliseconds, or an ISO 8601 time; ValueError says which is wrong."""
    text = text.strip()
    match = _CURSOR.match(text)
    if match:
        return Since(int(match.group(1)), text if match.group(2) is not None else None)
    try:
        return Since(iso_to_ms(text))
    except ValueError:
        raise ValueError(
            f"expected a cursor (like 1717000000123-2:345), epoch milliseconds or an ISO 8601 time, got {text!r}"
        ) from None


# --- filters ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClientFilter:
    """What one client asked for; None means any. Applied to live messages and to the gap fill alike."""

    services: frozenset[str] | None = None
    environments: frozenset[str] | None = None
    min_level: int = LEVELS["ERROR"]

    def matches(self, service: str | None, environment: str | None, level_num: int) -> bool:
        if level_num < self.min_level:
            return False
        if self.services is not None and service not in self.services:
            return False
        return self.environments is None or environment in self.environments

    @property
    def levels(self) -> list[str]:
        return [name for name in ERROR_LEVELS if LEVELS[name] >= self.min_level]


def _names(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


class StreamParamsSchema(Schema):
    """Query string of `/ws/error-logs`: ?service=a,b&environment=prod&level=FATAL&since=<cursor|time>&token=..."""

    class Meta:
        unknown = EXCLUDE  # checked by `parse_stream_params`, which names the unknown parameter

    service = fields.String(load_default=None)
    environment = fields.String(load_default=None)
    level = fields.String(load_default="ERROR")
    since = fields.String(load_default=None)
    token = fields.String(load_default=None)

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


def parse_stream_params(args: dict[str, str]) -> StreamParams:
    """Validate the query string; raises ValidationError with one message per wrong parameter."""
    schema = StreamParamsSchema()
    problems: dict[str, Any] = {name: ["unknown parameter"] for name in set(args) - set(schema.fields)}
    problems.update(schema.validate(args))
    if problems:
        raise ValidationError(problems)
    loaded = schema.load(args)
    service, environment = loaded["service"], loaded["environment"]
    return StreamParams(
        ClientFilter(
            services=frozenset(_names(service)) if service is not None else None,
            environments=frozenset(_names(environment)) if environment is not None else None,
            min_level=LEVELS[loaded["level"].strip().upper()],
        ),
        parse_since(loaded["since"]) if loaded["since"] is not None else None,
    )


# --- envelopes --------------------------------------------------------------------------------------
def envelope(doc_id: str, cursor: str, log: dict[str, Any]) -> bytes:
    return orjson.dumps({"event": "error-log", "cursor": cursor, "id": doc_id, "log": log})


def notice(event: str, **values: Any) -> bytes:
    """A control message: `dropped` (with count), `caught-up`, `ping`."""
    return orjson.dumps({"event": event, **values})


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One error log as a `ws` process holds it: what filters need, and the frame every socket is sent."""

    doc_id: str
    cursor: str
    ingested_ms: int
    service: str | None
    environment: str | None
    level_num: int
    frame: bytes


def live_message(raw: bytes) -> LiveMessage:
    """Parse a published envelope once; ValueError/KeyError when it is not one."""
    data = orjson.loads(raw)
    if data.get("event") != "error-log":
        raise ValueError(f"not an error-log envelope: event={data.get('event')!r}")
    log = data["log"]
    cursor = str(data["cursor"])
    level_num = log.get("level_num") or LEVELS.get(str(log.get("level", "")).upper(), 0)
    return LiveMessage(str(data["id"]), cursor, parse_since(cursor).ms, log.get("service_name"),
                       log.get("environment"), int(level_num), text_frame(raw))


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
