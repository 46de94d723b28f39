"""Error logs read back from `logs-apm`: what a reconnecting client missed, and catch-up after a Redis outage.

Times here are `ingested_at` (when Panopticon stored the log), not the producer's timestamp: that is
the order the live feed follows, so "since my last message" means the same thing in both.
"""

from __future__ import annotations

from typing import Any

from panopticon.errorstream.protocol import (
    ClientFilter,
    LiveMessage,
    envelope,
    live_message,
    make_cursor,
)
from panopticon.model import ERROR_LEVELS
from panopticon.model.times import iso_ms, iso_to_ms
from panopticon.settings import Settings
from panopticon.storage import LOGS, SearchStore


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
    return {
        "size": limit,
        "track_total_hits": True,
        "query": {"bool": {"filter": clauses}},
        # Newest first so a long outage keeps the most recent `limit`; reversed before sending.
        "sort": [{"ingested_at": "desc"}, {"@timestamp": "desc"}],
    }


def stored_errors(store: SearchStore, settings: Settings, since_ms: int, wanted: ClientFilter | None,
                  limit: int) -> tuple[list[LiveMessage], int]:
    """Messages oldest first, and how many more matched than `limit` allowed (skipped)."""
    if limit <= 0:
        return [], 0
    answer = store.search(settings.data_stream(LOGS), error_query(since_ms, wanted, limit),
                          timeout=settings.query_timeout_seconds)
    hits = answer.get("hits", {})
    messages = []
    for hit in reversed(hits.get("hits", [])):
        source = hit["_source"]
        cursor = make_cursor(iso_to_ms(source["ingested_at"]))
        messages.append(live_message(envelope(hit["_id"], cursor, source)))
    total = hits.get("total", {})
    matched = total.get("value", len(messages)) if isinstance(total, dict) else int(total)
    return messages, max(0, matched - len(messages))
