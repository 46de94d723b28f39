"""Time parameters of the query API: ISO 8601, epoch milliseconds, `now`, and relative `15m` / `24h` / `7d`.

Dashboards send all three spellings, so every route accepts all of them through this one module.
A relative form means "that long before now" (`start=24h` is 24 hours ago). `now` is passed in, never
read here, so the same request always resolves the same way in tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from panopticon.exceptions import InvalidParameter
from panopticon.model.times import MAX_TIME_MS, MIN_TIME_MS, iso_to_ms

MINUTE_MS = 60_000
UNITS_MS = {"ms": 1, "s": 1000, "m": MINUTE_MS, "h": 60 * MINUTE_MS, "d": 1440 * MINUTE_MS, "w": 10080 * MINUTE_MS}
_DURATION = re.compile(r"(\d{1,9})(ms|s|m|h|d|w)\Z")
_RELATIVE = re.compile(r"(?:now-)?(\d{1,9})(ms|s|m|h|d|w)\Z")
_EPOCH_MS = re.compile(r"\d{1,15}\Z")
_FORMS = "ISO 8601 (2024-05-01T12:00:00Z), epoch milliseconds, 'now', or a relative time such as 15m, 24h, 7d"


@dataclass(frozen=True)
class TimeRange:
    """A half-open range [start_ms, end_ms) in epoch milliseconds."""

    start_ms: int
    end_ms: int

    @property
    def length_ms(self) -> int:
        return self.end_ms - self.start_ms


def parse_duration(text: str, parameter: str) -> int:
    """`90s`, `15m`, `1h`, `7d` -> milliseconds (at least 1)."""
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise InvalidParameter(parameter, f"expected a duration such as 1m, 15m, 1h or 1d, got {text!r}")
    return int(match.group(1)) * UNITS_MS[match.group(2)]


def parse_time(text: str, parameter: str, *, now_ms: int) -> int:
    """One time parameter as epoch milliseconds; raises InvalidParameter naming `parameter`."""
    value = text.strip()
    lowered = value.lower()
    if lowered == "now":
        return now_ms
    if match := _RELATIVE.match(lowered):
        # The same plausibility as absolute times: `3000w` is 1966, a mistake, not a question.
        return _plausible(now_ms - int(match.group(1)) * UNITS_MS[match.group(2)], parameter)
    if _EPOCH_MS.match(value):
        return _plausible(int(value), parameter)
    try:
        epoch_ms = iso_to_ms(value.replace("z", "Z"))
    except (ValueError, OverflowError):
        raise InvalidParameter(parameter, f"expected {_FORMS}, got {text[:64]!r}") from None
    return _plausible(epoch_ms, parameter)


def _plausible(epoch_ms: int, parameter: str) -> int:
    # 2000-01-01 .. 2200-01-01: outside that a number is a unit mistake (seconds?), not a time.
    if not MIN_TIME_MS <= epoch_ms < MAX_TIME_MS:
        raise InvalidParameter(parameter, "must be between 2000-01-01 and 2200-01-01 "
                                          "(epoch milliseconds, not seconds)")
    return epoch_ms


def resolve_range(start: str | None, end: str | None, *, now_ms: int, default_ms: int,
                  max_days: int) -> TimeRange:
    """[start, end) from the request: end defaults to now, start to `default_ms` before end.

    The maximum length is checked here, before any engine call, so an over-long range costs nothing.
    """
    end_ms = now_ms if end is None else parse_time(end, "end", now_ms=now_ms)
    start_ms = end_ms - default_ms if start is None else parse_time(start, "start", now_ms=now_ms)
    if start_ms >= end_ms:
        raise InvalidParameter("start", "must be before end")
    if end_ms - start_ms > max_days * UNITS_MS["d"]:
        raise InvalidParameter("start", f"the range is longer than the limit of {max_days} days "
                                        "(QUERY_MAX_RANGE_DAYS)")
    return TimeRange(start_ms, end_ms)


def round_out(window: TimeRange, step_ms: int) -> TimeRange:
    """Widen a range to whole steps (start down, end up) so repeated refreshes ask the same question."""
    start = window.start_ms - window.start_ms % step_ms
    end = -(-window.end_ms // step_ms) * step_ms
    return TimeRange(start, end)

