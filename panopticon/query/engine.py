"""Every search of the query path goes through `run_search`, so every one is bounded by the request's deadline.

The timeout is given twice on purpose: in the body, so the engine stops working on an abandoned
query, and to the client, so a stuck connection cannot hold a web worker. A search that timed out
or lost shards would return partial counts that look exact; the store raises PartialAnswer instead
(HTTP 503, retry), because a wrong number on a dashboard is worse than no number.
"""

from __future__ import annotations

from typing import Any

from panopticon.query.deadline import Deadline
from panopticon.storage import SearchStore

# The engine stops at the body's timeout; the client waits a little longer for that (partial) answer.
CLIENT_MARGIN_S = 0.5


def run_search(store: SearchStore, index: str, body: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
    """The search, bounded by what is left of the request's deadline (QueryTimeout when nothing is)."""
    left = deadline.remaining()
    body = {**body, "timeout": f"{max(1, int(left * 1000))}ms"}
    return store.search(index, body, timeout=left + CLIENT_MARGIN_S)


def hits(answer: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = answer.get("hits", {}).get("hits", [])
    return found


def total(answer: dict[str, Any]) -> int:
    value = answer.get("hits", {}).get("total", 0)
    return int(value["value"] if isinstance(value, dict) else value)
