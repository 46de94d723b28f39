"""Every search of the query path goes through `run_search`, so every one carries a timeout.

The timeout is given twice on purpose: in the body, so the engine stops working on an abandoned
query, and to the client, so a stuck connection cannot hold a web worker. A search that timed out
or lost shards would return partial counts that look exact; it raises EngineUnavailable instead
(HTTP 503, retry), because a wrong number on a dashboard is worse than no number.
"""

from __future__ import annotations

from typing import Any

from panopticon.exceptions import EngineUnavailable
from panopticon.storage import SearchStore


def run_search(store: SearchStore, index: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    body = {**body, "timeout": f"{max(1, int(timeout * 1000))}ms"}
    answer = store.search(index, body, timeout=timeout + 1)
    if answer.get("timed_out"):
        raise EngineUnavailable(f"search of {index} timed out after {timeout:g}s (QUERY_TIMEOUT_SECONDS)")
    shards = answer.get("_shards") or {}
    if shards.get("failed"):
        raise EngineUnavailable(f"search of {index} failed on {shards['failed']} of {shards.get('total')} shards")
    return answer


def hits(answer: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = answer.get("hits", {}).get("hits", [])
    return found


def total(answer: dict[str, Any]) -> int:
    value = answer.get("hits", {}).get("total", 0)
    return int(value["value"] if isinstance(value, dict) else value)
