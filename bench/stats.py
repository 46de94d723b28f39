"""Small statistics helpers: nearest-rank percentiles (as the product's own percentiles) and rates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


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


class Sample(NamedTuple):
    """One poll of the engine: when, the searchable count of everything watched, and of each index alone."""

    at: float
    count: int
    parts: tuple[int, ...] = ()


def refresh_steps(samples: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """The first sample of every new non-zero count: when each refresh was seen (the count moves only then)."""
    steps: list[tuple[float, int]] = []
    for at, count, *_ in samples:
        if count > 0 and (not steps or count != steps[-1][1]):
            steps.append((at, count))
    return steps


MIN_WINDOW_S = 1.0  # a window shorter than one refresh interval says more about refresh timing than about rate


def steady_rate(samples: Sequence[Sample] | Sequence[tuple[float, int]], total: int) -> float | None:
    """Events per second while documents were being written, from the refreshes of each index; None when
    the run was too short to have such refreshes (the caller then says so and uses the overall rate).

    Each index's count moves only when that index refreshes (once a second, or sooner when its indexing
    buffer fills; the indices of the two data streams refresh on clocks of their own). Per index: its
    first refresh that shows documents comes after writing began; its last refresh before the one that
    shows all of them still shows fewer, so writing went on past it. Between those two, writing never
    stopped: their difference in count over their difference in time is the index's rate, and from it
    when its writing began (the first refresh, less the time its count then took at that rate) and ended
    (the next-to-last refresh, plus the time the rest took). The rate is every document over the time
    from the earliest start to the latest end, so it holds whether the two streams were written together
    or one after the other, and it has neither start-up (process start, group join) nor the tail in it
    (the last documents wait up to a refresh interval to show, which first-to-all counts as writing time:
    at 45,000 events/s, 150,000 events take 3.3 s, and that tail would be up to a third of it). Every
    index needs three refresh steps, MIN_WINDOW_S apart from its first to its next-to-last. The error
    left is the detection of each refresh (one poll interval) over that window, and how far writing was
    from a constant rate.
    """
    parts = [tuple(getattr(s, "parts", ())) for s in samples]
    if not samples or len({len(p) for p in parts}) != 1:
        return None
    if parts[0]:
        series_list = [[(s[0], p[k]) for s, p in zip(samples, parts, strict=True)] for k in range(len(parts[0]))]
    else:
        series_list = [[(s[0], s[1]) for s in samples]]
    spans = []
    for series in series_list:
        if series[-1][1] == 0:
            continue
        span = writing_span(series, series[-1][1])
        if span is None:
            return None
        spans.append(span)
    if not spans:
        return None
    began, ended = min(b for b, _ in spans), max(e for _, e in spans)
    return total / (ended - began) if ended > began else None


def writing_span(series: Sequence[tuple[float, int]], total: int) -> tuple[float, float] | None:
    """(when writing began, when it ended) of one index, from its refresh steps (see `steady_rate`)."""
    steps = refresh_steps(series)
    if len(steps) < 3 or steps[-1][1] < total:
        return None
    (start, first), (end, last) = steps[0], steps[-2]
    if end - start < MIN_WINDOW_S or last <= first:
        return None
    rate = (last - first) / (end - start)
    return start - first / rate, end + (total - last) / rate


def first_to_all_rate(samples: Sequence[tuple[float, int]] | Sequence[Sample], total: int) -> float | None:
    """Events per second from the first refresh that shows documents to the one that shows them all
    (includes up to one refresh interval of tail; see `steady_rate`)."""
    first = next(((s[0], s[1]) for s in samples if s[1] > 0), None)
    last = next((s[0] for s in samples if s[1] >= total), None)
    if first is None or last is None or last <= first[0]:
        return None
    return (total - first[1]) / (last - first[0])
