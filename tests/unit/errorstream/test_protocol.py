"""Cursors, `since`, query-string filters, envelopes and frames of the live error stream."""

from __future__ import annotations

import orjson
import pytest
from marshmallow import ValidationError

from panopticon.errorstream.protocol import (
    ClientFilter,
    InvalidMessage,
    Since,
    envelope,
    live_message,
    make_cursor,
    parse_since,
    parse_stream_params,
    text_frame,
)

LOG = {"service_name": "cart", "environment": "prod", "level": "ERROR", "level_num": 5, "message": "boom",
       "ingested_at": "2024-05-01T12:00:00.123Z"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(make_cursor(1714564800123, "cart-1"), Since(1714564800123, "cart-1"), id="cursor"),
        pytest.param(make_cursor(1714564800123, "apm.logs-2-9 é/?&"), Since(1714564800123, "apm.logs-2-9 é/?&"),
                     id="any-id-url-safe"),
        pytest.param("1714564800123-2:345", Since(1714564800123), id="old-live-cursor-is-a-time"),
        pytest.param("1714564800123", Since(1714564800123), id="epoch-ms-or-old-gap-cursor"),
        pytest.param("2024-05-01T12:00:00.123Z", Since(1714564800123), id="iso-z"),
        pytest.param("2024-05-01T14:00:00.123+02:00", Since(1714564800123), id="iso-offset"),
        pytest.param("2024-05-01T12:00:00.123", Since(1714564800123), id="iso-naive-is-utc"),
    ],
)
def test_since_accepts_cursors_and_times(text: str, expected: Since) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "12:5", "1714564800123-x:1", "", "1714564800123.", "1714564800123.!!",
                                  "1714564800123.gA"])
def test_since_says_what_it_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a cursor"):
        parse_since(text)


def test_cursor_is_time_then_the_id_url_safe() -> None:
    cursor = make_cursor(1714564800123, "a/b+c?")
    assert cursor == "1714564800123.YS9iK2M_" and cursor == cursor.strip("%&= ")


@pytest.mark.parametrize(
    ("wanted", "service", "environment", "level", "match"),
    [
        pytest.param(ClientFilter(), "any", "any", 5, True, id="default-takes-error"),
        pytest.param(ClientFilter(), "any", "any", 4, False, id="never-below-error"),
        pytest.param(ClientFilter(min_level=6), "any", "any", 5, False, id="fatal-only-skips-error"),
        pytest.param(ClientFilter(min_level=6), "any", "any", 6, True, id="fatal-only-takes-fatal"),
        pytest.param(ClientFilter(services=frozenset({"a", "b"})), "b", "x", 5, True, id="service-in-list"),
        pytest.param(ClientFilter(services=frozenset({"a"})), "c", "x", 5, False, id="other-team"),
        pytest.param(ClientFilter(services=frozenset({"a"})), None, "x", 5, False, id="no-service"),
        pytest.param(ClientFilter(environments=frozenset({"prod"})), "a", "staging", 5, False, id="other-env"),
        pytest.param(ClientFilter(frozenset({"a"}), frozenset({"prod"}), 5), "a", "prod", 6, True, id="all-match"),
    ],
)
def test_filter(wanted: ClientFilter, service: str | None, environment: str, level: int, match: bool) -> None:
    assert wanted.matches(service, environment, level) is match


def test_query_string_becomes_a_filter() -> None:
    params = parse_stream_params({"service": "a, b", "environment": "prod", "level": "fatal",
                                  "since": make_cursor(1714564800123, "e7"), "token": "t"})
    assert params.filter == ClientFilter(frozenset({"a", "b"}), frozenset({"prod"}), 6)
    assert params.filter.levels == ["FATAL"]
    assert params.since == Since(1714564800123, "e7")
    assert parse_stream_params({}).filter == ClientFilter()


def test_every_wrong_parameter_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_stream_params({"level": "INFO", "since": "soon", "service": " , ", "colour": "red"})
    problems = caught.value.messages
    assert set(problems) == {"level", "since", "service", "colour"}
    assert "ERROR, FATAL" in problems["level"][0]
    assert problems["colour"] == ["unknown parameter"]


def test_envelope_round_trip_keeps_what_filters_need() -> None:
    raw = envelope("doc-1", make_cursor(1714564800123, "doc-1"), LOG)
    assert orjson.loads(raw) == {"event": "error-log", "cursor": make_cursor(1714564800123, "doc-1"), "id": "doc-1",
                                 "log": LOG}
    message = live_message(raw)
    assert (message.doc_id, message.ingested_ms, message.service, message.environment, message.level_num) == (
        "doc-1", 1714564800123, "cart", "prod", 5)
    assert message.frame == text_frame(raw)


@pytest.mark.parametrize("raw", [b"not json", b'{"event": "ping"}', b'{"event": "error-log", "id": "x"}'])
def test_what_is_not_an_envelope_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidMessage):
        live_message(raw)


@pytest.mark.parametrize(("size", "header"), [(5, b"\x81\x05"), (126, b"\x81\x7e\x00\x7e"),
                                              (70000, b"\x81\x7f" + (70000).to_bytes(8, "big"))])
def test_text_frame_lengths(size: int, header: bytes) -> None:
    payload = b"x" * size
    assert text_frame(payload) == header + payload


def test_frames_decode_with_a_real_websocket_parser() -> None:
    from wsproto.frame_protocol import FrameProtocol, Opcode

    payloads = [b"a" * n for n in (1, 125, 126, 65535, 65536)]
    parser = FrameProtocol(client=True, extensions=[])
    parser.receive_bytes(b"".join(text_frame(p) for p in payloads))
    frames = list(parser.received_frames())
    assert [f.opcode for f in frames] == [Opcode.TEXT] * len(payloads)
    assert [f.payload.encode() for f in frames] == payloads
