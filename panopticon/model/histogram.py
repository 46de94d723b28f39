"""Log-scale mergeable latency histogram: the one place for percentile math.

Why this exists: percentiles are computed from three sources -- raw spans
(via an engine aggregation on ``duration_bucket``), rollup documents, and
merges of rollups over arbitrary ranges.  If all three bucket durations the
same way, they agree *exactly*, and every reported percentile carries the
same stated error bound instead of an engine-specific approximation.

Bucketing (DDSketch-style logarithmic mapping), durations in milliseconds::

    ALPHA     = 0.005                       # relative accuracy, 0.5 %
    GAMMA     = (1 + ALPHA) / (1 - ALPHA)   # ~1.01005
    MIN_VALUE = 1e-3                        # 1 microsecond

    bucket_index(v) = 0                                            if v <= MIN_VALUE
                    = max(1, ceil(ln(v / MIN_VALUE) / ln(GAMMA)))  otherwise

Bucket ``i >= 1`` holds ``(MIN_VALUE * GAMMA**(i-1), MIN_VALUE * GAMMA**i]``
and bucket 0 holds everything at or below 1 microsecond (including 0 and
clock-skew negatives).  The indexes are *stored* in span and rollup
documents, so ``ALPHA``, ``MIN_VALUE`` and the formula are frozen: changing
any of them means re-indexing all data.

Floating point note: a value within an ulp or so of a bucket boundary may
land in either neighbour on a different libm; at a boundary both neighbours'
representative values are exactly ALPHA away, so the error bound still holds.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence

ALPHA: float = 0.005
GAMMA: float = (1 + ALPHA) / (1 - ALPHA)
MIN_VALUE: float = 1e-3
ZERO_BUCKET: int = 0

_LOG_GAMMA = math.log(GAMMA)


def bucket_index(value_ms: float) -> int:
    """Map a duration in ms to its stored bucket index (formula in the module docstring).

    Non-finite durations are rejected rather than silently bucketed, because
    an index written at ingest can never be corrected later.
    """
    if value_ms <= MIN_VALUE:
        return ZERO_BUCKET
    ratio = value_ms / MIN_VALUE
    if not math.isfinite(ratio):  # NaN, inf, or so large (> ~1.8e305 ms) that the ratio overflows
        raise ValueError(f"duration must be a finite number of ms, got {value_ms!r}")
    index = math.ceil(math.log(ratio) / _LOG_GAMMA)
    # v / MIN_VALUE can round to 1.0 just above MIN_VALUE; keep real values off the zero bucket.
    return index if index > ZERO_BUCKET else 1


def bucket_value(index: int) -> float:
    """Representative value of a bucket, within ALPHA relative of every value in it.

    For bucket (g**(i-1), g**i] the point 2*g**i/(g+1) is the one whose
    relative distance to both ends is exactly ALPHA.  The zero bucket reports
    0.0: its values are below the 1 microsecond resolution, so its error
    bound is absolute (at most MIN_VALUE) instead of relative.
    """
    if index < ZERO_BUCKET:
        raise ValueError(f"bucket index must be >= 0, got {index}")
    if index == ZERO_BUCKET:
        return 0.0
    return MIN_VALUE * 2.0 * GAMMA**index / (GAMMA + 1.0)


def _whole(value: object, what: str) -> int:
    """Return value as an int, refusing fractions (engine histogram aggregations return float keys)."""
    try:
        return operator.index(value)  # type: ignore[arg-type]  # int, numpy integers; anything else raises
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            return int(value)
    raise ValueError(f"{what} must be a whole number, got {value!r}")


class Histogram:
    """Counts per bucket index; mergeable, so rollups and raw spans compose exactly."""

    __slots__ = ("_counts", "_total")

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self._counts: dict[int, int] = {}
        self._total = 0
        for index, count in (counts or {}).items():
            self.add_bucket(index, count)

    def add(self, value_ms: float, count: int = 1) -> None:
        """Record ``count`` observations of one duration."""
        self.add_bucket(bucket_index(value_ms), count)

    def add_bucket(self, index: int, count: int) -> None:
        """Add a pre-bucketed count, e.g. one row of an engine aggregation on duration_bucket."""
        index = _whole(index, "bucket index")
        count = _whole(count, "count")
        if index < ZERO_BUCKET:
            raise ValueError(f"bucket index must be >= 0, got {index}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count == 0:
            return  # never store zeros, so equality and to_arrays stay canonical
        self._counts[index] = self._counts.get(index, 0) + count
        self._total += count

    def merge(self, other: Histogram) -> None:
        """Add another histogram's counts into this one (exact: same buckets everywhere)."""
        for index, count in list(other._counts.items()):
            self.add_bucket(index, count)

    @property
    def count(self) -> int:
        """Total number of observations."""
        return self._total

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile, or None when empty.

        Definition: rank = max(1, ceil(q * n)) on the sorted values; the
        result is bucket_value of the bucket holding that rank.  Buckets are
        monotone in value, so that bucket holds the exact nearest-rank
        percentile (numpy's ``method="inverted_cdf"``) and the result is
        within ALPHA (0.5 %) relative of it -- or within MIN_VALUE absolute
        when that percentile is at or below 1 microsecond.
        """
        return quantiles(self, [q])[0]

    def to_arrays(self) -> tuple[list[int], list[int]]:
        """Sorted bucket indexes and their counts: parallel arrays that fit an engine mapping."""
        indexes = sorted(self._counts)
        return indexes, [self._counts[i] for i in indexes]

    @classmethod
    def from_arrays(cls, indexes: Iterable[int], counts: Iterable[int]) -> Histogram:
        """Inverse of to_arrays; repeated indexes are summed rather than lost."""
        indexes, counts = list(indexes), list(counts)
        if len(indexes) != len(counts):
            raise ValueError(f"{len(indexes)} indexes but {len(counts)} counts")
        histogram = cls()
        for index, count in zip(indexes, counts, strict=True):
            histogram.add_bucket(index, count)
        return histogram

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self._counts == other._counts

    def __repr__(self) -> str:
        return f"Histogram(count={self._total}, buckets={len(self._counts)})"


def _rank(q: float, total: int) -> int:
    """1-based nearest rank, matching numpy's inverted_cdf (rank 1 for q = 0)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q!r}")
    return max(1, math.ceil(q * total))


def quantiles(h: Histogram, qs: Sequence[float]) -> list[float | None]:
    """Several quantiles in one walk over the sorted buckets.

    Per time bucket the query path asks for p50/p95/p99 together; sorting
    the bucket indexes once and advancing through the requested ranks in
    order avoids one walk per q.  Results are in the order of ``qs``; each
    is as described in Histogram.quantile, or None for an empty histogram.
    """
    ranks = [_rank(q, h.count) for q in qs]
    results: list[float | None] = [None] * len(qs)
    if h.count == 0 or not qs:
        return results
    pending = iter(sorted(range(len(qs)), key=ranks.__getitem__))
    target: int | None = next(pending)
    counts, seen = h._counts, 0
    for index in sorted(counts):  # sorting bare int keys is far cheaper than sorting pairs
        seen += counts[index]
        while target is not None and seen >= ranks[target]:
            results[target] = bucket_value(index)
            target = next(pending, None)
        if target is None:
            return results
    raise AssertionError("unreachable: every rank is <= count")
