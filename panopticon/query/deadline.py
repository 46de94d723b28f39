"""One time budget per request: every engine call of an answer gets only what is left of it.

A dashboard question may take several engine requests (a composite aggregation page by page, rollups
and raw spans, a trace's spans and logs). A timeout per request would let them add up to many times
QUERY_TIMEOUT_SECONDS; the deadline makes the whole answer finish, or fail with QueryTimeout (HTTP 503),
within it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from panopticon.exceptions import QueryTimeout


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left; QueryTimeout when none are."""
        left = self._end - self._clock()
        if left <= 0:
            raise QueryTimeout(f"the answer took longer than {self.seconds:g} s (QUERY_TIMEOUT_SECONDS)")
        return left
