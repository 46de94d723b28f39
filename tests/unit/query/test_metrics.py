"""Interval choice and the bucket limit (checked before any engine call)."""

from __future__ import annotations

import pytest

from panopticon.exceptions import InvalidParameter
from panopticon.query.metrics import check_buckets, choose_interval, format_interval
from panopticon.query.timeparse import TimeRange

HOUR = 3_600_000


@pytest.mark.parametrize(
    ("hours", "interval"),
    [(0.25, "1m"), (1, "1m"), (5, "1m"), (6, "5m"), (24, "5m"), (7 * 24, "1h"), (31 * 24, "3h")],
)
def test_choose_interval(hours: float, interval: str) -> None:
    assert format_interval(choose_interval(TimeRange(0, int(hours * HOUR)), 1440)) == interval


def test_bucket_limit() -> None:
    check_buckets(TimeRange(0, 24 * HOUR), 60_000, 1440)
    with pytest.raises(InvalidParameter, match="1441 buckets") as caught:
        check_buckets(TimeRange(0, 24 * HOUR + 1), 60_000, 1440)
    assert caught.value.parameter == "interval"
