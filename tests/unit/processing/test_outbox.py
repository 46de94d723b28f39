"""The dead-letter size rule: a letter always fits its topic, and says what was cut (pure)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from panopticon.processing.outbox import DLQ_HEADROOM_BYTES, DeadLetter, payload_limit
from panopticon.settings import load_settings

SETTINGS = load_settings({"DLQ_MAX_MESSAGE_BYTES": "1048576"}, root=Path(__file__).parent)


def test_the_limit_is_the_lower_of_the_topic_and_the_setting_less_headroom() -> None:
    assert payload_limit(SETTINGS, None) == 1_048_576 - DLQ_HEADROOM_BYTES
    assert payload_limit(SETTINGS, 524_288) == 524_288 - DLQ_HEADROOM_BYTES
    assert payload_limit(SETTINGS, 10_000_000) == 1_048_576 - DLQ_HEADROOM_BYTES


def test_a_long_payload_is_cut_and_the_headers_say_its_size_and_hash() -> None:
    value = b"x" * 3_000_000
    letter = DeadLetter("apm.logs", 1, 42, value, "message too large").fitted(1000)
    assert letter.value == value[:1000]
    headers = dict(letter.headers())
    assert headers["panopticon.payload.truncated"] == b"true"
    assert headers["panopticon.payload.size"] == b"3000000"
    assert headers["panopticon.payload.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["panopticon.error.reason"] == b"message too large"
    assert letter.key == "apm.logs-1-42"


def test_a_payload_that_fits_is_sent_whole_and_says_nothing_of_cutting() -> None:
    letter = DeadLetter("apm.spans", 0, 7, b"{}", "bad").fitted(1000)
    assert letter.value == b"{}" and "panopticon.payload.truncated" not in dict(letter.headers())
