"""The relay's envelope for one error-topic message (pure: the message is a stand-in)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from panopticon.errorstream.protocol import make_cursor
from panopticon.errorstream.relay import relay_envelope

STORED_MS = 1714564800123
LOG = {"service_name": "cart", "environment": "prod", "level": "ERROR", "level_num": 5, "event_id": "e-1",
       "ingested_at": "2024-05-01T12:00:00.123Z"}


def _deep_log(depth: int) -> bytes:
    """A log whose attributes nest `depth` levels (written by hand: orjson would refuse to)."""
    prefix = orjson.dumps(LOG)[:-1] + b',"attributes":'
    return prefix + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


@dataclass
class FakeMessage:
    _value: bytes
    _key: bytes | None = b"doc-1"

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return "apm.logs.error"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 345


def test_envelope_carries_cursor_id_and_the_stored_document() -> None:
    body, cursor = relay_envelope(FakeMessage(orjson.dumps(LOG)), now_ms=STORED_MS + 1000, max_age_ms=300_000)
    assert cursor == make_cursor(STORED_MS, "doc-1")
    assert orjson.loads(body) == {"event": "error-log", "cursor": cursor, "id": "doc-1", "log": LOG}


def test_without_a_key_the_event_id_is_the_id() -> None:
    body, _cursor = relay_envelope(FakeMessage(orjson.dumps(LOG), None), now_ms=STORED_MS, max_age_ms=300_000)
    assert orjson.loads(body)["id"] == "e-1"


def test_old_errors_are_not_news() -> None:
    assert relay_envelope(FakeMessage(orjson.dumps(LOG)), now_ms=STORED_MS + 300_001,
                          max_age_ms=300_000) == "too_old"


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(FakeMessage(b"garbage"), id="not-json"),
        pytest.param(FakeMessage(b"[]"), id="an-array"),
        pytest.param(FakeMessage(orjson.dumps({"level": "ERROR"})), id="no-ingested-at"),
        pytest.param(FakeMessage(orjson.dumps({**LOG, "ingested_at": 7})), id="ingested-at-a-number"),
        pytest.param(FakeMessage(orjson.dumps(LOG), b"\xff\xfe"), id="key-not-utf8"),
        pytest.param(FakeMessage(orjson.dumps(LOG), b"k" * 600), id="key-too-long"),
        # orjson reads 1,024 levels but writes only 254: the envelope could not be encoded.
        pytest.param(FakeMessage(_deep_log(300)), id="nested-too-deep"),
        pytest.param(FakeMessage(orjson.dumps({**LOG, "message": "x" * 2000})), id="too-large"),
    ],
)
def test_what_is_not_a_stored_log_is_skipped_and_the_relay_goes_on(message: FakeMessage) -> None:
    assert relay_envelope(message, now_ms=STORED_MS, max_age_ms=300_000, max_bytes=1024) == "invalid"
