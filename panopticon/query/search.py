"""Span and log search with cursor pagination (`search_after`), plus the shapes the API answers with.

Why cursors and not `from`: a page at depth N with `from` makes every shard sort N + size hits, and
the engine refuses past 10 000; `search_after` costs the same at any depth. The sort always ends with
fields that are unique per document (trace_id + span_id; the Kafka coordinates of a log), so the
order is total and a page boundary never skips or repeats a document.

A cursor is the last hit's sort values plus the sort it belongs to, as opaque URL-safe base64: a
cursor is only valid with the sort that made it, and a client cannot forge query structure with it
(it decodes to a list of scalars, checked before use).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from panopticon.exceptions import InvalidParameter
from panopticon.query import filters as f
from panopticon.query.deadline import Deadline
from panopticon.query.engine import hits, run_search, total
from panopticon.query.timeparse import TimeRange
from panopticon.storage import LOGS, TRACES, SearchStore

# API sort name -> stored field. Only these may be sorted on.
SPAN_SORTS = {"start_time": "@timestamp", "duration_ms": "duration_ms", "service_name": "service_name",
              "name": "name"}
LOG_SORTS = {"timestamp": "@timestamp", "level": "level_num", "service_name": "service_name"}
SPAN_TIEBREAK = ("trace_id", "span_id")
LOG_TIEBREAK = ("kafka.topic", "kafka.partition", "kafka.offset")
# Stored fields that sort as numbers; every other sort field is a keyword (string).
_INTEGER_SORTS = frozenset({"@timestamp", "level_num", "kafka.partition", "kafka.offset"})
_NUMBER_SORTS = frozenset({"duration_ms"})
_LONG = 2**63


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None


@dataclass(frozen=True)
class Sort:
    field: str  # the API name, e.g. "duration_ms"
    order: str  # "asc" or "desc"

    @property
    def key(self) -> str:
        return f"{self.field}:{self.order}"


@dataclass
class SpanQuery:
    window: TimeRange
    service: str | None = None
    environment: str | None = None
    name: str | None = None
    kind: str | None = None
    status: str | None = None
    error: bool | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    roots_only: bool = False
    requests_only: bool = False
    endpoint: str | None = None
    extra: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LogQuery:
    window: TimeRange
    service: str | None = None
    environment: str | None = None
    levels: tuple[str, ...] = ()
    trace_id: str | None = None
    span_id: str | None = None
    text: str | None = None


# --- cursors ------------------------------------------------------------------------------------------


def encode_cursor(sort: Sort, values: list[Any]) -> str:
    raw = orjson.dumps({"s": sort.key, "v": values})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: Sort, fields: list[str]) -> list[Any]:
    """The sort values a cursor carries; InvalidParameter('cursor') when it is not one of ours for `sort`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, orjson.JSONDecodeError, UnicodeEncodeError):
        raise InvalidParameter("cursor", "not a cursor returned by this API") from None
    if not isinstance(data, dict) or not isinstance(data.get("v"), list):
        raise InvalidParameter("cursor", "not a cursor returned by this API")
    if data.get("s") != sort.key:
        raise InvalidParameter("cursor", f"was made for sort {data.get('s')!r}, not {sort.key!r}")
    values: list[Any] = data["v"]
    if len(values) != len(fields) or not all(map(_fits, fields, values)):
        raise InvalidParameter("cursor", "not a cursor returned by this API")
    return values


def _fits(stored_field: str, value: Any) -> bool:
    """A cursor value of the type the engine expects for that sort field (else it would answer 400)."""
    if isinstance(value, bool):
        return False
    if stored_field in _INTEGER_SORTS:
        return isinstance(value, int) and -_LONG <= value < _LONG
    if stored_field in _NUMBER_SORTS:
        return isinstance(value, int | float) and abs(value) < 1e300
    return isinstance(value, str) and len(value) <= 1024


# --- shapes -------------------------------------------------------------------------------------------


def span_out(hit: dict[str, Any]) -> dict[str, Any]:
    """The API's span: the stored document without internal fields, plus its id."""
    doc = hit["_source"]
    return {
        "id": hit["_id"],
        "trace_id": doc["trace_id"],
        "span_id": doc["span_id"],
        "parent_span_id": doc.get("parent_span_id"),
        "service_name": doc["service_name"],
        "environment": doc.get("environment"),
        "name": doc["name"],
        "kind": doc.get("kind"),
        "status": doc.get("status"),
        "start_time": doc["start_time"],
        "end_time": doc["end_time"],
        "duration_ms": doc["duration_ms"],
        "http": doc.get("http"),
        "attributes": doc.get("attributes") or {},
        "is_root": doc.get("is_root", False),
        "is_request": doc.get("is_request", False),
        "is_error": doc.get("is_error", False),
        "endpoint": doc.get("endpoint"),
    }


def log_out(hit: dict[str, Any]) -> dict[str, Any]:
    doc = hit["_source"]
    return {
        "id": hit["_id"],
        "timestamp": doc["timestamp"],
        "service_name": doc["service_name"],
        "environment": doc.get("environment"),
        "level": doc["level"],
        "message": doc.get("message", ""),
        "trace_id": doc.get("trace_id"),
        "span_id": doc.get("span_id"),
        "event_id": doc.get("event_id"),
        "attributes": doc.get("attributes") or {},
    }


# --- queries ------------------------------------------------------------------------------------------


def span_filter(q: SpanQuery) -> dict[str, Any]:
    return f.bool_filter([
        f.time_range("@timestamp", q.window.start_ms, q.window.end_ms),
        f.optional_term("service_name", q.service),
        f.optional_term("environment", q.environment),
        f.optional_term("name", q.name),
        f.optional_term("kind", q.kind),
        f.optional_term("status", q.status),
        f.optional_term("is_error", q.error),
        f.optional_term("trace_id", q.trace_id),
        f.optional_term("span_id", q.span_id),
        f.optional_term("parent_span_id", q.parent_span_id),
        f.optional_term("endpoint", q.endpoint),
        f.term("is_root", True) if q.roots_only else None,
        f.term("is_request", True) if q.requests_only else None,
        f.number_range("duration_ms", q.min_duration_ms, q.max_duration_ms),
        *q.extra,
    ])


def log_filter(q: LogQuery) -> dict[str, Any]:
    return f.bool_filter([
        f.time_range("@timestamp", q.window.start_ms, q.window.end_ms),
        f.optional_term("service_name", q.service),
        f.optional_term("environment", q.environment),
        f.terms("level", list(q.levels)) if q.levels else None,
        f.optional_term("trace_id", q.trace_id),
        f.optional_term("span_id", q.span_id),
    ], must=[f.match_text("message", q.text)] if q.text else None)


def span_cursor(cursor: str | None, sort: Sort) -> list[Any] | None:
    """The `search_after` values of a span cursor (checked before any engine call), or None."""
    return _after(cursor, sort, SPAN_SORTS, SPAN_TIEBREAK)


def log_cursor(cursor: str | None, sort: Sort) -> list[Any] | None:
    return _after(cursor, sort, LOG_SORTS, LOG_TIEBREAK)


def _after(cursor: str | None, sort: Sort, allowed: dict[str, str], tiebreak: tuple[str, ...]) -> list[Any] | None:
    return decode_cursor(cursor, sort, [allowed[sort.field], *tiebreak]) if cursor else None


def search_spans(store: SearchStore, q: SpanQuery, sort: Sort, *, limit: int, after: list[Any] | None,
                 deadline: Deadline) -> Page:
    """One page of spans; `after` comes from `span_cursor`."""
    return _page(store, store.name(TRACES), span_filter(q), sort, [SPAN_SORTS[sort.field], *SPAN_TIEBREAK],
                 span_out, limit=limit, after=after, deadline=deadline)


def search_logs(store: SearchStore, q: LogQuery, sort: Sort, *, limit: int, after: list[Any] | None,
                deadline: Deadline) -> Page:
    """One page of logs; `after` comes from `log_cursor`."""
    return _page(store, store.name(LOGS), log_filter(q), sort, [LOG_SORTS[sort.field], *LOG_TIEBREAK],
                 log_out, limit=limit, after=after, deadline=deadline)


def _page(store: SearchStore, index: str, query: dict[str, Any], sort: Sort, fields: list[str],
          shape: Callable[[dict[str, Any]], dict[str, Any]], *, limit: int, after: list[Any] | None,
          deadline: Deadline) -> Page:
    order = [{name: {"order": sort.order}} for name in fields]
    # One extra hit says whether another page exists, so the last page never hands out a dead cursor.
    body: dict[str, Any] = {"query": query, "sort": order, "size": limit + 1, "track_total_hits": True}
    if after:
        body["search_after"] = after
    answer = run_search(store, index, body, deadline)
    found = hits(answer)
    page, more = found[:limit], len(found) > limit
    next_cursor = encode_cursor(sort, page[-1]["sort"]) if more and page else None
    return Page([shape(hit) for hit in page], total(answer), next_cursor)
