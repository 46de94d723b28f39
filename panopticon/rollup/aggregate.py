"""`Aggregate`: the request statistics of one slice of time (and one service / endpoint), mergeable.

Raw spans (an engine aggregation) and rollup documents are both turned into Aggregates, so the query
path merges and answers them the same way, whatever mix of sources a range needs. Percentiles come
from the histogram (see `histogram.py` for the stated error); counts are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from panopticon.model.histogram import Histogram, quantiles

PERCENTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass
class Aggregate:
    requests: int = 0
    errors: int = 0
    duration_sum: float = 0.0
    duration_min: float | None = None
    duration_max: float | None = None
    histogram: Histogram = field(default_factory=Histogram)

    def merge(self, other: Aggregate) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.duration_sum += other.duration_sum
        self.duration_min = _pick(min, self.duration_min, other.duration_min)
        self.duration_max = _pick(max, self.duration_max, other.duration_max)
        self.histogram.merge(other.histogram)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def avg_ms(self) -> float | None:
        return self.duration_sum / self.requests if self.requests else None

    def percentiles(self, qs: tuple[float, ...] = PERCENTILES) -> dict[str, float | None]:
        """{"p50": ..., "p90": ..., "p95": ..., "p99": ...} in ms."""
        values = quantiles(self.histogram, qs)
        return {f"p{round(q * 100):d}": v for q, v in zip(qs, values, strict=True)}


def _pick(fn: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)
