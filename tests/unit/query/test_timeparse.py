"""Time parameters: every accepted spelling, and errors that name the parameter."""

from __future__ import annotations

import pytest

from panopticon.exceptions import InvalidParameter
from panopticon.model.times import iso_ms
from panopticon.query.timeparse import TimeRange, parse_duration, parse_time, resolve_range, round_out

NOW = 1_714_564_800_000  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("now", NOW, id="now"),
        pytest.param("NOW", NOW, id="now-any-case"),
        pytest.param("15m", NOW - 15 * 60_000, id="relative-minutes"),
        pytest.param("24h", NOW - 24 * 3_600_000, id="relative-hours"),
        pytest.param("7d", NOW - 7 * 86_400_000, id="relative-days"),
        pytest.param("now-30s", NOW - 30_000, id="now-minus"),
        pytest.param("1714564800000", NOW, id="epoch-ms"),
        pytest.param("2024-05-01T12:00:00Z", NOW, id="iso-z"),
        pytest.param("2024-05-01T12:00:00.250Z", NOW + 250, id="iso-ms"),
        pytest.param("2024-05-01T14:00:00+02:00", NOW, id="iso-offset"),
        pytest.param("2024-05-01T12:00:00", NOW, id="iso-naive-is-utc"),
        pytest.param(" 2024-05-01 ", NOW - 12 * 3_600_000, id="iso-date"),
    ],
)
def test_accepted_forms(text: str, expected: int) -> None:
    assert parse_time(text, "start", now_ms=NOW) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("yesterday", "ISO 8601", id="word"),
        pytest.param("1714564800", "epoch milliseconds", id="epoch-seconds"),
        pytest.param("15x", "ISO 8601", id="bad-unit"),
        pytest.param("-5", "ISO 8601", id="negative"),
        pytest.param("9999-12-31T00:00:00Z", "2200", id="far-future"),
        pytest.param("", "ISO 8601", id="empty"),
        pytest.param("1000000w", "2000-01-01", id="relative-before-year-1"),
        pytest.param("3000w", "2000-01-01", id="relative-1966"),
        pytest.param("now-999999999d", "2000-01-01", id="relative-huge"),
    ],
)
def test_rejected_forms_name_the_parameter(text: str, says: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_time(text, "end", now_ms=NOW)
    assert caught.value.parameter == "end" and says in caught.value.problem


def test_durations() -> None:
    assert parse_duration("1m", "interval") == 60_000
    assert parse_duration("15M", "interval") == 900_000
    assert parse_duration("500ms", "interval") == 500
    for bad in ("0m", "1", "m", "1.5m", "-1m"):
        with pytest.raises(InvalidParameter, match="interval"):
            parse_duration(bad, "interval")


def test_resolve_range_defaults_and_limits() -> None:
    assert resolve_range(None, None, now_ms=NOW, default_ms=900_000, max_days=31) == TimeRange(NOW - 900_000, NOW)
    assert resolve_range("1h", "now", now_ms=NOW, default_ms=1, max_days=31).length_ms == 3_600_000
    with pytest.raises(InvalidParameter, match="before end") as caught:
        resolve_range("now", "1h", now_ms=NOW, default_ms=1, max_days=31)
    assert caught.value.parameter == "start"
    with pytest.raises(InvalidParameter, match="limit of 7 days"):
        resolve_range("8d", None, now_ms=NOW, default_ms=1, max_days=7)


def test_round_out_widens_to_whole_steps() -> None:
    assert round_out(TimeRange(NOW + 1, NOW + 60_001), 60_000) == TimeRange(NOW, NOW + 120_000)
    assert round_out(TimeRange(NOW, NOW + 60_000), 60_000) == TimeRange(NOW, NOW + 60_000)


def test_iso() -> None:
    assert iso_ms(NOW + 5) == "2024-05-01T12:00:00.005Z"
