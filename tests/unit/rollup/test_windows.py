"""Window planning: which windows a rollup run covers, with labelled cases and an injected clock."""

from __future__ import annotations

import pytest

from panopticon.rollup.windows import HOUR_MS, MINUTE_MS, WindowPlan, closed_hours, due_windows, windows_between

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # an hour boundary
PLAN = WindowPlan(window_ms=MINUTE_MS, grace_ms=30_000, reroll_ms=10 * MINUTE_MS, lookback_ms=24 * HOUR_MS,
                  max_windows=360)


def minutes(first: int, last: int) -> list[int]:
    """Window starts T0+first .. T0+last minutes, inclusive."""
    return [T0 + m * MINUTE_MS for m in range(first, last + 1)]


@pytest.mark.parametrize(
    ("label", "now", "watermark", "first_data", "expected"),
    [
        ("first run starts at the first request", T0 + 5 * MINUTE_MS + 40_000, None, T0 + 2 * MINUTE_MS + 5,
         minutes(2, 4)),
        ("first run with no data rolls nothing", T0 + 5 * MINUTE_MS, None, None, []),
        ("a window inside its grace is not due", T0 + 5 * MINUTE_MS + 10_000, None, T0, minutes(0, 3)),
        ("steady state: the new window plus ten re-rolled", T0 + 30 * MINUTE_MS + 40_000, T0 + 29 * MINUTE_MS,
         None, minutes(19, 29)),
        ("catch-up after 10 minutes down", T0 + 40 * MINUTE_MS + 40_000, T0 + 30 * MINUTE_MS, None,
         minutes(20, 39)),
        ("catch-up never reaches past the look-back", T0 + 48 * HOUR_MS + 40_000, T0, None,
         minutes(24 * 60, 24 * 60 + 359)),
        ("old first data is bounded by the look-back", T0 + 25 * HOUR_MS + 40_000, None, T0,
         minutes(60, 60 + 359)),
        ("a watermark from the future rolls only re-rolls up to now", T0 + 5 * MINUTE_MS + 40_000,
         T0 + 10 * MINUTE_MS, None, minutes(0, 4)),
    ],
)
def test_due_windows(label, now, watermark, first_data, expected) -> None:
    assert due_windows(PLAN, now, watermark, first_data) == expected, label


def test_due_windows_with_five_minute_windows() -> None:
    plan = WindowPlan(window_ms=5 * MINUTE_MS, grace_ms=0, reroll_ms=10 * MINUTE_MS, lookback_ms=HOUR_MS,
                      max_windows=100)
    assert due_windows(plan, T0 + 31 * MINUTE_MS, T0 + 25 * MINUTE_MS, None) == [T0 + 15 * MINUTE_MS,
                                                                                T0 + 20 * MINUTE_MS,
                                                                                T0 + 25 * MINUTE_MS]


def test_closed_hours_only_lists_hours_that_ended() -> None:
    windows = minutes(50, 70)
    assert closed_hours(windows, T0 + 71 * MINUTE_MS) == [T0]
    assert closed_hours(windows, T0 + 59 * MINUTE_MS) == []
    assert closed_hours(windows, T0 + 120 * MINUTE_MS) == [T0, T0 + HOUR_MS]


def test_windows_between_is_outward_aligned() -> None:
    assert windows_between(T0 + 90_000, T0 + 3 * MINUTE_MS + 1, MINUTE_MS) == minutes(1, 3)
    assert windows_between(T0, T0 + 2 * MINUTE_MS, MINUTE_MS) == minutes(0, 1)
