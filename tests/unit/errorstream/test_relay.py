"""The relay's envelope for one error-topic message (pure: the message is a stand-in)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from panopticon.errorstream.relay import relay_envelope

STORED_MS = 1714564800123
LOG = {"service_name": "cart", "environment": "prod", "level": "ERROR", "level_num": 5, "event_id": "e-1",
       "ingested_at": "2024-05-01T12:00:00.123Z"}


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
    body = relay_envelope(FakeMessage(orjson.dumps(LOG)), now_ms=STORED_MS + 1000, max_age_ms=300_000)
    assert orjson.loads(body) == {"event": "error-log", "cursor": f"{STORED_MS}-2:345", "id": "doc-1", "log": LOG}


def test_without_a_key_the_event_id_is_the_id() -> None:
    body = relay_envelope(FakeMessage(orjson.dumps(LOG), None), now_ms=STORED_MS, max_age_ms=300_000)
    assert orjson.loads(body)["id"] == "e-1"


def test_old_errors_are_not_news() -> None:
    assert relay_envelope(FakeMessage(orjson.dumps(LOG)), now_ms=STORED_MS + 300_001, max_age_ms=300_000) is None


def test_what_is_not_a_stored_log_is_skipped() -> None:
    for value in (b"garbage", b"[]", orjson.dumps({"level": "ERROR"})):
        assert relay_envelope(FakeMessage(value), now_ms=STORED_MS, max_age_ms=300_000) is None
