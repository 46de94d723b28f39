"""Error logs read back from `logs-apm`: what a reconnecting client missed, and catch-up after a Redis outage.

Times here are `ingested_at` (when Panopticon stored the log), not the producer's timestamp: that is
the order the live feed follows, so "since my last message" means the same thing in both.

Memory: after a `ws` restart every client reconnects at once with since=. `GapFills` bounds what one
process reads and holds for them: at most WS_GAP_FILL_CONCURRENCY reads at a time, each of at most
WS_GAP_FILL_MAX logs, held until the last client that shares it has written it; clients asking the
same question (same start, same filter) share one read, as long as it started after they subscribed
to the hub (each takes a `ticket` when it subscribes): a read from before a client subscribed could
miss what was published in between, so such a client starts a read of its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from panopticon import telemetry
from panopticon.errorstream.protocol import (
    ClientFilter,
    InvalidMessage,
    LiveMessage,
    envelope,
    live_message,
    make_cursor,
)
from panopticon.model import ERROR_LEVELS
from panopticon.model.times import iso_ms, iso_to_ms
from panopticon.settings import Settings
from panopticon.storage import LOGS, SearchStore

log = logging.getLogger(__name__)

Gap = tuple[list[LiveMessage], int]  # messages oldest first, and how many more matched than the limit


def error_query(since_ms: int, wanted: ClientFilter | None, limit: int) -> dict[str, Any]:
    """The newest `limit` ERROR/FATAL logs stored at or after `since_ms` that `wanted` accepts."""
    levels = wanted.levels if wanted is not None else list(ERROR_LEVELS)
    clauses: list[dict[str, Any]] = [
        {"range": {"ingested_at": {"gte": iso_ms(since_ms)}}},
        {"terms": {"level": levels}},
    ]
    if wanted is not None and wanted.services is not None:
        clauses.append({"terms": {"service_name": sorted(wanted.services)}})
    if wanted is not None and wanted.environments is not None:
        clauses.append({"terms": {"environment": sorted(wanted.environments)}})
    if wanted is not None and wanted.groups is not None:
        clauses.append({"terms": {"fingerprint": sorted(wanted.groups)}})
    return {
        "size": limit,
        "track_total_hits": True,
        "query": {"bool": {"filter": clauses}},
        # Newest first so a long outage keeps the most recent `limit`; reversed before sending.
        "sort": [{"ingested_at": "desc"}, {"@timestamp": "desc"}],
    }


def stored_errors(store: SearchStore, settings: Settings, since_ms: int, wanted: ClientFilter | None,
                  limit: int) -> Gap:
    """Messages oldest first, and how many more matched than `limit` allowed (skipped)."""
    if limit <= 0:
        return [], 0
    answer = store.search(settings.data_stream(LOGS), error_query(since_ms, wanted, limit),
                          timeout=settings.query_timeout_seconds)
    hits = answer.get("hits", {})
    messages = []
    for hit in reversed(hits.get("hits", [])):
        source = hit["_source"]
        try:
            cursor = make_cursor(iso_to_ms(source["ingested_at"]), hit["_id"])
            messages.append(live_message(envelope(hit["_id"], cursor, source)))
        except (InvalidMessage, KeyError, TypeError, ValueError) as exc:  # stored before today's checks existed
            telemetry.WS_INVALID.labels(getattr(exc, "field", "stored")).inc()
            log.warning("left out a stored log that is not a valid error-log envelope (%s): %s", hit.get("_id"), exc)
    total = hits.get("total", {})
    matched = total.get("value", len(messages)) if isinstance(total, dict) else int(total)
    return messages, max(0, matched - len(messages))


@dataclass(eq=False)
class _Read:
    users: int = 0
    started: bool = False
    started_after: int = 0  # the last ticket issued when the read began: those clients may share it
    done: threading.Event = field(default_factory=threading.Event)
    result: Gap | None = None
    error: BaseException | None = None


class GapFills:
    """The gap fills of one `ws` process (see the module docstring). Threads are greenlets in `ws`."""

    def __init__(self, slots: int) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._latest: dict[Hashable, _Read] = {}  # the newest read of each question, while someone uses it
        self._tickets = 0
        self.reads = 0
        self.shared = 0

    def ticket(self) -> int:
        """Taken by a client right after it subscribed to the hub."""
        with self._lock:
            self._tickets += 1
            return self._tickets

    @contextlib.contextmanager
    def read(self, key: Hashable, fetch: Callable[[], Gap], ticket: int) -> Iterator[Gap]:
        """The answer to `key`: fetched by this caller, or shared with a read of the same question that began
        after this caller's `ticket` (or has not begun). Held (counted against the slots) until the block
        ends: write inside it."""
        with self._lock:
            shared = self._latest.get(key)
            leader = shared is None or (shared.started and shared.started_after < ticket)
            if leader:
                shared = self._latest[key] = _Read()
            assert shared is not None
            shared.users += 1
        try:
            telemetry.WS_GAP_FILL_WAITING.inc()
            try:
                if leader:
                    self._fetch(key, shared, fetch)
                else:
                    shared.done.wait()
                    self.shared += 1
                    telemetry.WS_GAP_FILLS.labels("shared").inc()
            finally:
                telemetry.WS_GAP_FILL_WAITING.dec()
                if leader and not shared.done.is_set():  # interrupted while waiting for a slot
                    shared.error = RuntimeError("the shared gap-fill read was abandoned")
                    shared.done.set()
            if shared.error is not None:
                raise shared.error
            assert shared.result is not None
            yield shared.result
        finally:
            with self._lock:
                shared.users -= 1
                last = shared.users == 0
                if last and self._latest.get(key) is shared:
                    del self._latest[key]
            if last and shared.started:
                self._slots.release()

    def _fetch(self, key: Hashable, shared: _Read, fetch: Callable[[], Gap]) -> None:
        self._slots.acquire()
        with self._lock:
            shared.started = True
            shared.started_after = self._tickets  # clients that subscribed later start a read of their own
        try:
            shared.result = fetch()
            self.reads += 1
            telemetry.WS_GAP_FILLS.labels("read").inc()
        except BaseException as exc:  # handed to every sharer, which re-raises it
            shared.error = exc
            telemetry.WS_GAP_FILLS.labels("failed").inc()
        finally:
            shared.done.set()
