"""Times: how they are read from messages, which are plausible, and the one format we store and answer with.

Everything inside Panopticon is epoch milliseconds (UTC). Text leaves it in one fixed format,
`2024-05-01T12:00:00.123Z` (UTC, milliseconds, Z): stored documents compare as strings in time order and
the engine never guesses a format.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# 2000-01-01T00:00:00Z: anything earlier is a producer bug (often epoch seconds sent as milliseconds).
MIN_TIME_MS = 946_684_800_000
# 2200-01-01T00:00:00Z: the latest time a query parameter may name.
MAX_TIME_MS = 7_258_118_400_000
# How far in the future an event time may be (clock skew), in milliseconds.
MAX_FUTURE_MS = 86_400_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ONE_SECOND = timedelta(seconds=1)
_NUMERIC = re.compile(r"-?\d{1,20}(?:\.\d{1,9})?\Z")


def now_ms() -> int:
    """The wall clock in epoch milliseconds; passed in as `clock` wherever a test must move time."""
    return int(time.time() * 1000)


def parse_time(value: object) -> float | None:
    """Epoch milliseconds from an ISO 8601 string, a number, or a numeric string; None if neither.

    A naive ISO time means UTC. bool is refused although it is an int in Python: `true` is never a time.
    """
    if type(value) is str and len(value) == 24 and value[23] == "Z" and value[19] == ".":
        # Our own format, which most producers send: the second is read once (cached), the milliseconds by hand.
        seconds, millis = _second_of(value[:19]), value[20:23]
        if seconds is not None and millis.isascii() and millis.isdigit():
            return float(seconds * 1000 + int(millis))
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)  # orjson never yields NaN or infinity
    if not isinstance(value, str) or len(value) > 64:
        return None
    if _NUMERIC.match(value):
        return float(value)
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - _EPOCH) / _ONE_MS
    except (ValueError, OverflowError):
        return None


def time_problem(epoch_ms: float, now_ms: int) -> str | None:
    """Why an event time is implausible, or None (depends on `now_ms`, so checked after the schema)."""
    if epoch_ms < MIN_TIME_MS:
        if MIN_TIME_MS / 1000 <= epoch_ms < 1e11:
            return "before 2000-01-01 (epoch seconds instead of milliseconds?)"
        return "before 2000-01-01"
    if epoch_ms > now_ms + MAX_FUTURE_MS:
        return "more than 1 day in the future"
    return None


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # Spans of one batch share a few seconds: formatting each second once keeps strftime off the hot path.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


@lru_cache(maxsize=4096)
def _second_of(text: str) -> int | None:
    """Epoch seconds of `YYYY-MM-DDTHH:MM:SS` (UTC), None when it is not one: the inverse of `_second`."""
    if not text.isascii() or text[10] != "T":
        return None
    try:
        moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None
    return (moment - _EPOCH) // _ONE_SECOND


_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))


def iso_ms(epoch_ms: float) -> str:
    """`2024-05-01T12:00:00.123Z`; sub-millisecond precision is dropped (durations keep it)."""
    seconds, millis = divmod(int(epoch_ms), 1000)
    return _second(seconds) + _MILLIS[millis]


def iso_to_ms(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (naive means UTC); ValueError when it is not one."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MS  # exact: timestamp() * 1000 can land a millisecond low
