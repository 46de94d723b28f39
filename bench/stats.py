"""Small statistics helpers: nearest-rank percentiles (as the product's own percentiles) and rates."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, q in (0, 100]; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values_s: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p95 / p99 / max in milliseconds of latencies given in seconds."""
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), **{f"p{q}_ms": _round(percentile(ms, q)) for q in (50, 95, 99)},
            "max_ms": _round(max(ms) if ms else None)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def steady_rate(samples: Sequence[tuple[float, int]], total: int, low: float = 0.1,
                high: float = 0.9) -> float | None:
    """Events per second between the moments `low` and `high` of `total` became visible.

    Leaves out start-up (process start, group join) and the tail (the last refresh), which are
    not throughput. Crossing moments are interpolated between polls.
    """
    start = _crossing(samples, low * total)
    end = _crossing(samples, high * total)
    if start is None or end is None or end <= start:
        return None
    return (high - low) * total / (end - start)


def _crossing(samples: Sequence[tuple[float, int]], level: float) -> float | None:
    previous = None
    for at, count in samples:
        if count >= level:
            if previous is None or count == previous[1]:
                return at
            p_at, p_count = previous
            return p_at + (at - p_at) * (level - p_count) / (count - p_count)
        previous = (at, count)
    return None
