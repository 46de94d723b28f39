"""Window arithmetic for rollups. Pure; times are epoch milliseconds.

A *window* is [start, start + ROLLUP_BUCKET_MINUTES) aligned to the epoch, named by its start. Which windows
a rollup run rolls is decided by what was stored (see `job.py`), not by the clock: these helpers only cut
and group windows.
"""

from __future__ import annotations

from collections.abc import Iterable

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
Range = tuple[int, int]


def floor_to(ms: int, step_ms: int) -> int:
    return ms - ms % step_ms


def ceil_to(ms: int, step_ms: int) -> int:
    return -floor_to(-ms, step_ms)


def windows_between(start_ms: int, end_ms: int, window_ms: int) -> list[int]:
    """Every window touching [start_ms, end_ms), outward-aligned (backfill)."""
    return list(range(floor_to(start_ms, window_ms), ceil_to(end_ms, window_ms), window_ms))


def hours_of(windows: Iterable[int]) -> list[int]:
    """Starts of the hours these windows belong to, sorted."""
    return sorted({floor_to(window, HOUR_MS) for window in windows})


def runs(windows: Iterable[int], window_ms: int, *, within_hour: bool = False) -> list[Range]:
    """Sorted windows as contiguous [start, end) ranges; with `within_hour`, no range crosses an hour.

    One aggregation covers one run, so scattered late windows cost one request per run, and the windows
    that settle in order after a quiet minute cost one request in all.
    """
    out: list[Range] = []
    for window in sorted(set(windows)):
        if out and out[-1][1] == window and not (within_hour and window % HOUR_MS == 0):
            out[-1] = (out[-1][0], window + window_ms)
        else:
            out.append((window, window + window_ms))
    return out


def settled_cut(now_ms: int, settle_ms: int) -> int:
    """The ingest time before which every stored span is visible: nothing started earlier still writes."""
    return floor_to(now_ms - settle_ms, 1000)
