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


def steady_rate(samples: Sequence[tuple[float, int]], total: int) -> float | None:
    """Events per second from the first refresh that shows documents to the one that shows them all.

    Both ends are refresh moments (the count only moves when the engine refreshes, once a second), so
    the rate is not distorted by interpolating inside a refresh step, and start-up (process start,
    group join) is left out. Its error is about one refresh interval over the run's length: runs of
    tens of seconds (the default 150,000 events) keep it to a few per cent.
    """
    first = next(((at, count) for at, count in samples if count > 0), None)
    last = next((at for at, count in samples if count >= total), None)
    if first is None or last is None or last <= first[0]:
        return None
    return (total - first[1]) / (last - first[0])
