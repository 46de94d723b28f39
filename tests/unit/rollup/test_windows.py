"""Window arithmetic: runs of windows, hours, the settled cut."""

from __future__ import annotations

import pytest

from panopticon.rollup.windows import HOUR_MS, MINUTE_MS, hours_of, runs, settled_cut, windows_between

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # an hour boundary
M = MINUTE_MS


@pytest.mark.parametrize(
    ("label", "windows", "within_hour", "expected"),
    [
        ("nothing", [], False, []),
        ("one window", [T0 + 5 * M], False, [(T0 + 5 * M, T0 + 6 * M)]),
        ("contiguous windows make one run, repeats and order do not matter", [T0 + 2 * M, T0, T0 + M, T0 + M],
         False, [(T0, T0 + 3 * M)]),
        ("a gap starts a new run", [T0, T0 + M, T0 + 5 * M], False, [(T0, T0 + 2 * M), (T0 + 5 * M, T0 + 6 * M)]),
        ("a run may cross an hour", [T0 + HOUR_MS - M, T0 + HOUR_MS], False, [(T0 + HOUR_MS - M, T0 + HOUR_MS + M)]),
        ("or not, when asked", [T0 + HOUR_MS - M, T0 + HOUR_MS], True,
         [(T0 + HOUR_MS - M, T0 + HOUR_MS), (T0 + HOUR_MS, T0 + HOUR_MS + M)]),
    ],
)
def test_runs(label, windows, within_hour, expected) -> None:
    assert runs(windows, M, within_hour=within_hour) == expected, label


def test_runs_of_five_minute_windows() -> None:
    assert runs([T0, T0 + 5 * M, T0 + 15 * M], 5 * M) == [(T0, T0 + 10 * M), (T0 + 15 * M, T0 + 20 * M)]


def test_hours_of() -> None:
    assert hours_of([T0 + 3 * M, T0 + 59 * M, T0 + HOUR_MS, T0 - M]) == [T0 - HOUR_MS, T0, T0 + HOUR_MS]


def test_settled_cut_is_now_minus_settle_to_the_second() -> None:
    assert settled_cut(T0 + 180_500, 180_000) == T0
    assert settled_cut(T0 + 181_999, 180_000) == T0 + 1000


def test_windows_between_is_outward_aligned() -> None:
    assert windows_between(T0 + 30_000, T0 + 2 * M + 1, M) == [T0, T0 + M, T0 + 2 * M]
    assert windows_between(T0, T0 + 2 * M, M) == [T0, T0 + M]
