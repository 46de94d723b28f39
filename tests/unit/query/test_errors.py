"""The pure parts of the error-group answers: paging with cursors, trend intervals, merging GroupStats."""

from __future__ import annotations

from collections import Counter

import pytest

from panopticon.exceptions import InvalidParameter
from panopticon.query.errors import decode_cursor, page, trend_interval
from panopticon.query.timeparse import TimeRange
from panopticon.rollup.errors import GroupStats, Row

H = 3_600_000


def rows(n: int) -> list[dict]:
    return [{"fingerprint": f"{i:016x}", "count": i % 4, "last_seen": None, "first_seen": None} for i in range(n)]


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_pages_cover_every_row_once_in_order(order: str) -> None:
    seen, cursor = [], None
    while True:
        items, next_cursor = page(rows(11), sort="count", order=order, limit=3,
                                  cursor=decode_cursor(cursor, "count", order) if cursor else None)
        seen += items
        if next_cursor is None:
            break
        cursor = next_cursor
    assert sorted(r["fingerprint"] for r in seen) == sorted(r["fingerprint"] for r in rows(11))
    counts = [r["count"] for r in seen]
    assert counts == sorted(counts, reverse=order == "desc")


def test_a_cursor_is_only_good_for_its_sort() -> None:
    _, cursor = page(rows(5), sort="count", order="desc", limit=2, cursor=None)
    assert cursor is not None
    with pytest.raises(InvalidParameter, match="sort"):
        decode_cursor(cursor, "last_seen", "desc")
    for bad in ("x", "e30", "WzEsMl0"):
        with pytest.raises(InvalidParameter):
            decode_cursor(bad, "count", "desc")


@pytest.mark.parametrize(("hours", "window_minutes", "expected_minutes"),
                         [(1, 1, 1), (24, 1, 30), (168, 1, 180), (1, 5, 5), (6, 1, 10)])
def test_trend_interval(hours: int, window_minutes: int, expected_minutes: int) -> None:
    assert trend_interval(TimeRange(0, hours * H), window_minutes * 60_000) == expected_minutes * 60_000


def test_group_stats_merge_exactly() -> None:
    a = GroupStats(3, 100, 200, 200, "newer", "E", "ERROR", "s", Counter(s=3), Counter(p=3), Counter(x=1),
                   Counter({0: 3}), {"t1": 200})
    b = GroupStats(2, 50, 150, 150, "older", "E", "FATAL", "s", Counter(s=2), Counter(p=1, q=1), Counter(x=2),
                   Counter({0: 1, 60: 1}), {"t2": 150, "t1": 90})
    a.merge(b)
    assert (a.count, a.first_seen_ms, a.last_seen_ms, a.message) == (5, 50, 200, "newer")
    assert a.trend == Counter({0: 4, 60: 1}) and a.endpoints == Counter(x=3)
    assert a.sample_ids() == ["t1", "t2"]


def test_rows_of_an_hour_merge_to_the_newest_message() -> None:
    hour = Row(2, 10, 20, "first", samples=["a"])
    hour.merge(Row(1, 30, 40, "second", samples=["b"]))
    assert (hour.count, hour.first_seen_ms, hour.last_seen_ms, hour.message, hour.samples) == \
        (3, 10, 40, "second", ["b", "a"])
