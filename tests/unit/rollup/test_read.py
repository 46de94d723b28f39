"""The read-side planner: which part of a range rollups answer, and from which tier."""

from __future__ import annotations

import pytest

from panopticon.model.histogram import Histogram
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.read import (
    RangePlan,
    _check,
    aggregate_key,
    aggregates_from_json,
    aggregates_to_json,
    split_range,
    tier_segments,
    with_unrolled,
)
from panopticon.rollup.windows import HOUR_MS, MINUTE_MS

H = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # an hour boundary
M = MINUTE_MS


def plan(start, end, *, now, interval=None, threshold=60):
    return split_range(start, end, now_ms=now, threshold_minutes=threshold, window_ms=M, interval_ms=interval)


NOW = H + 5 * HOUR_MS


@pytest.mark.parametrize(
    ("label", "args", "kwargs", "expected"),
    [
        ("old aligned range: all rollups", (H, H + 60 * M), dict(now=NOW), RangePlan((H, H + 60 * M), ())),
        ("newest part is raw", (H, H + 5 * HOUR_MS), dict(now=NOW),
         RangePlan((H, H + 4 * HOUR_MS), ((H + 4 * HOUR_MS, H + 5 * HOUR_MS),))),
        ("unaligned edges are raw", (H + 30_000, H + 10 * M + 5), dict(now=NOW),
         RangePlan((H + M, H + 10 * M), ((H + 30_000, H + M), (H + 10 * M, H + 10 * M + 5)))),
        ("range newer than the threshold", (H + 4 * HOUR_MS + M, H + 5 * HOUR_MS), dict(now=NOW),
         RangePlan(None, ((H + 4 * HOUR_MS + M, H + 5 * HOUR_MS),))),
        ("a bucket size that splits windows", (H, H + HOUR_MS), dict(now=NOW, interval=90_000),
         RangePlan(None, ((H, H + HOUR_MS),))),
        ("a 15-minute bucket size", (H, H + HOUR_MS), dict(now=NOW, interval=15 * M), RangePlan((H, H + HOUR_MS), ())),
        ("empty range", (H, H), dict(now=NOW), RangePlan(None, ())),
    ],
)
def test_split_range(label, args, kwargs, expected) -> None:
    assert plan(*args, **kwargs) == expected, label


def test_parts_cover_the_range_exactly_once() -> None:
    start, end = H - 7 * 24 * HOUR_MS + 12_345, H + 17 * M + 999
    result = plan(start, end, now=end)
    parts = sorted([result.rollup, *result.raw])
    assert parts[0][0] == start and parts[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))


@pytest.mark.parametrize(
    ("label", "unrolled", "expected"),
    [
        ("nothing late: the plan stands", [], RangePlan((H, H + 2 * HOUR_MS), ((H + 2 * HOUR_MS, NOW),))),
        ("late windows join the raw ranges, merged where they touch", [H + 5 * M, H + 6 * M, H + 2 * HOUR_MS - M],
         RangePlan((H, H + 2 * HOUR_MS), ((H + 5 * M, H + 7 * M), (H + 2 * HOUR_MS - M, NOW)),
                   frozenset({H + 5 * M, H + 6 * M, H + 2 * HOUR_MS - M}))),
        ("windows outside the rollup part are ignored", [H - M, NOW - M],
         RangePlan((H, H + 2 * HOUR_MS), ((H + 2 * HOUR_MS, NOW),))),
        ("every window late: all raw", [H + i * M for i in range(120)], RangePlan(None, ((H, NOW),))),
    ],
)
def test_with_unrolled(label, unrolled, expected) -> None:
    base = plan(H, NOW, now=H + 3 * HOUR_MS)
    assert with_unrolled(base, unrolled, M) == expected, label


def test_with_unrolled_still_covers_the_range_exactly_once() -> None:
    start, end = H + 12_345, H + 3 * HOUR_MS
    result = with_unrolled(plan(start, end, now=end + HOUR_MS), [H + 7 * M, H + 61 * M, H + 62 * M], M)
    rolled = [(w, w + M) for w in range(*result.rollup, M) if w not in result.skip]
    pieces = sorted([*rolled, *result.raw])
    assert pieces[0][0] == start and pieces[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False)), "gaps or overlaps"


@pytest.mark.parametrize(
    ("label", "start", "end", "interval", "expected"),
    [
        ("a week: hourly only", H - 168 * HOUR_MS, H, None, [("1h", H - 168 * HOUR_MS, H)]),
        ("edges from minutes", H - 10 * M, H + 2 * HOUR_MS + 7 * M, None,
         [("1m", H - 10 * M, H), ("1h", H, H + 2 * HOUR_MS), ("1m", H + 2 * HOUR_MS, H + 2 * HOUR_MS + 7 * M)]),
        ("15-minute buckets need minutes", H, H + 2 * HOUR_MS, 15 * M, [("1m", H, H + 2 * HOUR_MS)]),
        ("daily buckets can use hours", H, H + 2 * HOUR_MS, 24 * HOUR_MS, [("1h", H, H + 2 * HOUR_MS)]),
        ("less than an hour", H + M, H + 50 * M, None, [("1m", H + M, H + 50 * M)]),
    ],
)
def test_tier_segments(label, start, end, interval, expected) -> None:
    assert tier_segments(start, end, M, interval, "1m") == expected, label


def test_an_hour_with_a_window_read_raw_is_read_from_minutes() -> None:
    pieces = tier_segments(H, H + 4 * HOUR_MS, M, None, "1m", frozenset({H + HOUR_MS + 7 * M, H + 3 * HOUR_MS}))
    assert pieces == [("1h", H, H + HOUR_MS), ("1m", H + HOUR_MS, H + 2 * HOUR_MS), ("1h", H + 2 * HOUR_MS,
                      H + 3 * HOUR_MS), ("1m", H + 3 * HOUR_MS, H + 4 * HOUR_MS)]
    edge = tier_segments(H - 5 * M, H + 2 * HOUR_MS, M, None, "1m", frozenset({H + 3 * M}))
    assert edge == [("1m", H - 5 * M, H + HOUR_MS), ("1h", H + HOUR_MS, H + 2 * HOUR_MS)]


@pytest.mark.parametrize(
    ("args", "problem"),
    [((H + 1, H + M, M, None, None), "whole 1-minute windows"), ((H + M, H, M, None, None), "must be after"),
     ((H, H + M, M, 90_000, None), "interval must be a multiple"), ((H, H + M, M, None, "host"), "group_by")],
)
def test_check_refuses_what_split_range_never_gives(args, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        _check(*args)


@pytest.mark.parametrize(
    ("group", "bucket", "grouped", "timed", "expected"),
    [("GET /x", H, True, True, ("GET /x", H)), ("GET /x", None, True, False, "GET /x"), (None, H, False, True, H),
     (None, None, False, False, None)],
)
def test_aggregate_key_has_the_raw_paths_shape(group, bucket, grouped, timed, expected) -> None:
    assert aggregate_key(group, bucket, grouped=grouped, timed=timed) == expected


@pytest.mark.parametrize("keys", [[("GET /x", H), ("GET /y", H + M)], ["GET /x", "GET /y"], [H, H + M], [None]])
def test_cache_encoding_round_trips(keys) -> None:
    values = [Aggregate(3, 1, 12.5, 1.0, 9.0, Histogram({10: 2, 700: 1})),
              Aggregate(1, 0, 2.0, 2.0, 2.0, Histogram({300: 1}))]
    aggregates = dict(zip(keys, values, strict=False))
    assert aggregates_from_json(aggregates_to_json(aggregates)) == aggregates


def test_cache_encoding_keeps_service_environment_keys() -> None:
    one = Aggregate(requests=2, errors=1, duration_sum=30.0, duration_min=10.0, duration_max=20.0)
    one.histogram.add(10.0)
    one.histogram.add(20.0)
    keys = [("checkout", "production"), (("checkout", "staging"), 60_000), ("checkout", 120_000), 180_000, None]
    decoded = aggregates_from_json(aggregates_to_json(dict.fromkeys(keys, one)))
    assert list(decoded) == keys
    assert all(a.percentiles() == one.percentiles() and a.requests == 2 for a in decoded.values())
