"""Time planning for rollups: which windows are due, which hours they close. Pure; the clock is passed in.

A *window* is [start, start + ROLLUP_BUCKET_MINUTES) aligned to the epoch, identified by its start in
epoch ms. The *watermark* is the end of the newest window rolled up so far: every closed window before
it has a document (if it had requests). Each run rolls the windows closed since the watermark, plus the
last ROLLUP_REROLL_MINUTES before it again for spans that arrived late, and never goes further back than
ROLLUP_LOOKBACK_HOURS, so an outage of any length costs a bounded amount of work.
"""

from __future__ import annotations

from dataclasses import dataclass

from panopticon.settings import Settings

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def floor_to(ms: int, step_ms: int) -> int:
    return ms - ms % step_ms


def ceil_to(ms: int, step_ms: int) -> int:
    return -floor_to(-ms, step_ms)


@dataclass(frozen=True)
class WindowPlan:
    """The knobs of `due_windows`, taken from Settings once."""

    window_ms: int
    grace_ms: int
    reroll_ms: int
    lookback_ms: int
    max_windows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> WindowPlan:
        return cls(
            window_ms=settings.rollup_bucket_minutes * MINUTE_MS,
            grace_ms=settings.rollup_grace_seconds * 1000,
            reroll_ms=settings.rollup_reroll_minutes * MINUTE_MS,
            lookback_ms=settings.rollup_lookback_hours * HOUR_MS,
            max_windows=settings.rollup_max_windows_per_run,
        )

    def last_closed_end(self, now_ms: int) -> int:
        """End of the newest window that closed at least `grace` ago (spans may still be in flight)."""
        return floor_to(now_ms - self.grace_ms, self.window_ms)


def due_windows(plan: WindowPlan, now_ms: int, watermark_ms: int | None, first_data_ms: int | None) -> list[int]:
    """Window starts to roll up now, oldest first.

    Without a watermark (first run) rolling starts at the first stored request, so a fresh deployment
    does not walk through a day of empty windows. At most `max_windows` are returned: the oldest ones,
    so the watermark can advance contiguously and the next run continues where this one stopped.
    """
    end = plan.last_closed_end(now_ms)
    floor_start = floor_to(now_ms - plan.lookback_ms, plan.window_ms)
    if watermark_ms is None:
        if first_data_ms is None:
            return []
        start = floor_to(first_data_ms, plan.window_ms)
    else:
        start = floor_to(watermark_ms - plan.reroll_ms, plan.window_ms)
    start = max(start, floor_start)
    return list(range(start, end, plan.window_ms))[: plan.max_windows]


def closed_hours(window_starts: list[int], closed_until_ms: int) -> list[int]:
    """Starts of the hours these windows belong to that have closed by `closed_until_ms` (sorted)."""
    hours = {floor_to(start, HOUR_MS) for start in window_starts}
    return sorted(hour for hour in hours if hour + HOUR_MS <= closed_until_ms)


def windows_between(start_ms: int, end_ms: int, window_ms: int) -> list[int]:
    """Every window touching [start_ms, end_ms), outward-aligned (backfill)."""
    return list(range(floor_to(start_ms, window_ms), ceil_to(end_ms, window_ms), window_ms))
