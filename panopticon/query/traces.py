"""One trace: every span and log of it, spans ordered as a tree, and a summary.

Spans arrive from the engine in any order and a trace may be incomplete (a service that does not
report, a span still in flight). `order_tree` is pure so that case is unit-tested: a span whose
parent is missing becomes the root of its own subtree, placed by start time among the true roots,
and is listed in the summary's `missing_parents`, so nothing is ever hidden from the reader.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from panopticon.query import filters as f
from panopticon.query.deadline import Deadline
from panopticon.query.engine import hits, run_search, total
from panopticon.query.search import log_out, span_out
from panopticon.storage import LOGS, TRACES, SearchStore

# The engine's default result window; a trace larger than this is answered truncated, and says so.
MAX_TRACE_DOCUMENTS = 10_000


def _start_key(span: dict[str, Any]) -> tuple[str, str]:
    # Stored times share one fixed ISO format, so string order is time order.
    return (span["start_time"], span["span_id"])


def order_tree(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans in depth-first order: a parent before its children, siblings by start time; adds `depth`."""
    ids = {span["span_id"] for span in spans}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    roots = []
    for span in spans:
        parent = span.get("parent_span_id")
        if parent is None or parent not in ids or parent == span["span_id"]:
            roots.append(span)
        else:
            children[parent].append(span)
    ordered: list[dict[str, Any]] = []
    seen: set[str] = set()
    stack = [(span, 0) for span in sorted(roots, key=_start_key, reverse=True)]
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:
            continue
        seen.add(span["span_id"])
        ordered.append({**span, "depth": depth})
        stack.extend((child, depth + 1) for child in sorted(children[span["span_id"]], key=_start_key, reverse=True))
    # A parent cycle (a producer bug) has no root; list those spans last rather than drop them.
    for span in sorted((s for s in spans if s["span_id"] not in seen), key=_start_key):
        ordered.append({**span, "depth": 0})
    return ordered


def summarize(spans: list[dict[str, Any]], logs: list[dict[str, Any]]) -> dict[str, Any]:
    ids = {span["span_id"] for span in spans}
    starts = [span["start_time"] for span in spans]
    ends = [span["end_time"] for span in spans]
    start, end = (min(starts), max(ends)) if spans else (None, None)
    return {
        "start_time": start,
        "end_time": end,
        "duration_ms": _span_ms(start, end, spans),
        "span_count": len(spans),
        "log_count": len(logs),
        "services": sorted({span["service_name"] for span in spans}),
        "error_count": sum(1 for span in spans if span["is_error"]),
        "root_span_ids": [s["span_id"] for s in spans if s.get("parent_span_id") is None],
        "missing_parents": sorted(s["span_id"] for s in spans
                                  if s.get("parent_span_id") is not None and s["parent_span_id"] not in ids),
    }


def _span_ms(start: str | None, end: str | None, spans: list[dict[str, Any]]) -> float | None:
    """Trace duration: first start to last end (one span's own duration when it is alone)."""
    if start is None or end is None:
        return None
    if len(spans) == 1:
        return float(spans[0]["duration_ms"])
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000


def trace_documents(store: SearchStore, query: dict[str, Any], deadline: Deadline, *,
                    count_all: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's answers for the spans and the logs matching `query`, each in the order a trace shows them
    (at most MAX_TRACE_DOCUMENTS of each); `count_all` asks for exact totals, to tell a truncated trace."""
    span_answer = run_search(store, store.name(TRACES), {
        "query": query, "size": MAX_TRACE_DOCUMENTS, "track_total_hits": count_all,
        "sort": [{"@timestamp": "asc"}, {"span_id": "asc"}]}, deadline)
    log_answer = run_search(store, store.name(LOGS), {
        "query": query, "size": MAX_TRACE_DOCUMENTS, "track_total_hits": count_all,
        "sort": [{"@timestamp": "asc"}, {"kafka.topic": "asc"}, {"kafka.partition": "asc"},
                 {"kafka.offset": "asc"}]}, deadline)
    return span_answer, log_answer


def get_trace(store: SearchStore, trace_id: str, *, service: str | None, environment: str | None,
              deadline: Deadline) -> dict[str, Any] | None:
    """The trace, or None when no span or log carries `trace_id` (after the optional filters)."""
    query = f.bool_filter([f.term("trace_id", trace_id), f.optional_term("service_name", service),
                           f.optional_term("environment", environment)])
    span_answer, log_answer = trace_documents(store, query, deadline, count_all=True)
    spans = [span_out(hit) for hit in hits(span_answer)]
    logs = [log_out(hit) for hit in hits(log_answer)]
    if not spans and not logs:
        return None
    truncated = total(span_answer) > len(spans) or total(log_answer) > len(logs)
    return {"trace_id": trace_id, "summary": summarize(spans, logs), "spans": order_tree(spans), "logs": logs,
            "truncated": truncated}

