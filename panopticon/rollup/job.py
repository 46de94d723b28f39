"""Rolling spans up: one window -> documents, closed hours -> hourly documents, and the watermark.

Every write is an overwrite by a deterministic id (see `documents.py`), so any window or hour may be
rolled any number of times, by any number of workers at once, and ends with the same documents. That
is what makes re-rolling for late spans, catching up after an outage and operator backfills safe.
The watermark only ever moves forward (a scripted update on the engine), so two beats cannot undo
each other's progress.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import orjson

from panopticon.exceptions import EngineRejected, EngineUnavailable
from panopticon.flow import STATE, TRACES
from panopticon.model.histogram import Histogram
from panopticon.model.times import iso_ms, now_ms
from panopticon.rollup import documents as docs
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.documents import HOURLY, Exemplars, Key, Row
from panopticon.rollup.read import scan_documents
from panopticon.rollup.windows import HOUR_MS, WindowPlan, closed_hours, due_windows, floor_to, windows_between
from panopticon.storage import BulkItem, SearchStore

log = logging.getLogger(__name__)

WATERMARK_ID = "rollup-watermark"
# Keys per composite page. Each key carries a histogram of up to ~2000 buckets (1 us .. 1000 s at
# 0.5 %), and the engine refuses answers over search.max_buckets (65535 by default).
PAGE_KEYS = 25
BULK_DOCS = 500
_EXEMPLAR = {"size": 1, "sort": [{"duration_ms": "desc"}, {"span_id": "asc"}],
             "_source": ["trace_id", "span_id", "duration_ms"]}


# --- windows ------------------------------------------------------------------------------------
def windows_body(start_ms: int, end_ms: int, width_ms: int, after: dict[str, Any] | None = None) -> dict[str, Any]:
    """ONE aggregation for the windows in [start_ms, end_ms): per (window, service, environment, endpoint)
    everything a document needs. Catch-up asks for up to an hour of windows at once, page by page."""
    composite: dict[str, Any] = {"size": PAGE_KEYS, "sources": [
        {"window": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{width_ms}ms"}}},
        {"service": {"terms": {"field": "service_name"}}},
        {"environment": {"terms": {"field": "environment"}}},
        {"endpoint": {"terms": {"field": "endpoint"}}},
    ]}
    if after:
        composite["after"] = after
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": [
            {"term": {"is_request": True}},
            {"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}},
        ]}},
        "aggs": {"keys": {"composite": composite, "aggs": {
            # The same buckets the spans were stored with: raw and rollup percentiles agree exactly.
            "histogram": {"histogram": {"field": "duration_bucket", "interval": 1, "min_doc_count": 1}},
            "sum": {"sum": {"field": "duration_ms"}},
            "min": {"min": {"field": "duration_ms"}},
            "max": {"max": {"field": "duration_ms"}},
            "slowest": {"top_hits": _EXEMPLAR},
            "errors": {"filter": {"term": {"is_error": True}}, "aggs": {"slowest": {"top_hits": _EXEMPLAR}}},
        }}},
    }


def row_from_bucket(bucket: dict[str, Any]) -> Row:
    """One composite bucket of `windows_body` as a Row."""
    histogram = Histogram()
    for entry in bucket["histogram"]["buckets"]:
        histogram.add_bucket(entry["key"], entry["doc_count"])
    aggregate = Aggregate(
        requests=int(bucket["doc_count"]),
        errors=int(bucket["errors"]["doc_count"]),
        duration_sum=float(bucket["sum"]["value"] or 0.0),
        duration_min=bucket["min"]["value"],
        duration_max=bucket["max"]["value"],
        histogram=histogram,
    )
    return Row(aggregate, Exemplars(_top_hit(bucket["slowest"]), _top_hit(bucket["errors"]["slowest"])))


def _top_hit(agg: dict[str, Any]) -> dict[str, Any] | None:
    hits = agg["hits"]["hits"]
    if not hits:
        return None
    source = hits[0]["_source"]
    return {"trace_id": source["trace_id"], "span_id": source["span_id"], "duration_ms": source["duration_ms"]}


def aggregate_windows(store: SearchStore, start_ms: int, end_ms: int, width_ms: int) -> dict[int, dict[Key, Row]]:
    """{window start: rows per endpoint key plus per-service totals} for requests started in [start_ms, end_ms)."""
    windows: dict[int, dict[Key, Row]] = {}
    after = None
    while True:
        answer = store.search(store.name(TRACES), windows_body(start_ms, end_ms, width_ms, after))
        keys = (answer.get("aggregations") or {}).get("keys") or {}
        for bucket in keys.get("buckets", []):
            k = bucket["key"]
            rows = windows.setdefault(int(k["window"]), {})
            rows[Key(k["service"], k["environment"], k["endpoint"])] = row_from_bucket(bucket)
        after = keys.get("after_key")
        if not keys.get("buckets") or not after:
            return {window: with_service_totals(rows) for window, rows in windows.items()}


def with_service_totals(rows: dict[Key, Row]) -> dict[Key, Row]:
    """Add one total per (service, environment), merged from its endpoints in a fixed order."""
    out = dict(rows)
    for key in sorted(rows, key=Key.sort_key):
        out.setdefault(key.service_total(), Row()).merge(rows[key])
    return out


def write_rows(store: SearchStore, tier: str, windows: dict[int, dict[Key, Row]], now: int) -> int:
    """Overwrite the documents of some windows (of one month); raises unless the engine stored every one."""
    written = 0
    items = [(docs.doc_id(tier, key, window), orjson.dumps(docs.to_document(tier, key, window, row, now)), window)
             for window, rows in sorted(windows.items())
             for key, row in sorted(rows.items(), key=lambda kv: kv[0].sort_key())]
    for start in range(0, len(items), BULK_DOCS):
        chunk = items[start:start + BULK_DOCS]
        for index, group in groupby(chunk, key=lambda item: docs.metrics_index(store.settings, item[2])):
            _check_stored(store.index_many(index, [(doc_id, body) for doc_id, body, _ in group]))
        written += len(chunk)
    return written


def _check_stored(results: list[BulkItem]) -> None:
    failed = [item for item in results if item.status not in (200, 201)]
    if failed:
        first = failed[0]
        problem = f"{len(failed)} rollup documents not stored, first: {first.status} {first.error_type}: {first.reason}"
        raise EngineUnavailable(problem) if any(item.transient for item in failed) else EngineRejected(problem)


def roll_span(store: SearchStore, start_ms: int, end_ms: int, *, now: int | None = None) -> int:
    """Roll up every window in [start_ms, end_ms) (window-aligned; an hour or less keeps pages small)."""
    width = store.settings.rollup_bucket_minutes * 60_000
    windows = aggregate_windows(store, start_ms, end_ms, width)
    return write_rows(store, docs.minute_tier(store.settings.rollup_bucket_minutes), windows,
                      now if now is not None else now_ms())


def roll_window(store: SearchStore, window_ms: int, *, now: int | None = None) -> int:
    """Roll up the one window holding `window_ms`; returns how many documents were written."""
    width = store.settings.rollup_bucket_minutes * 60_000
    window_ms = floor_to(window_ms, width)
    return roll_span(store, window_ms, window_ms + width, now=now)


# --- one hour -------------------------------------------------------------------------------------
def roll_hour(store: SearchStore, hour_ms: int, *, now: int | None = None) -> int:
    """Merge an hour's window documents into hourly ones (exact: histograms merge bucket by bucket)."""
    settings = store.settings
    hour_ms = floor_to(hour_ms, HOUR_MS)
    index = docs.metrics_index(settings, hour_ms)
    store.refresh(index)  # the windows just written must be visible to the merge
    rows: dict[Key, Row] = {}
    tier = docs.minute_tier(settings.rollup_bucket_minutes)
    for _, document in scan_documents(store, index, [{"term": {"tier": tier}}], hour_ms, hour_ms + HOUR_MS):
        rows.setdefault(docs.key_of(document), Row()).merge(docs.row_of(document))
    return write_rows(store, HOURLY, {hour_ms: rows} if rows else {}, now if now is not None else now_ms())


# --- the watermark --------------------------------------------------------------------------------
def get_watermark(store: SearchStore) -> int | None:
    """End of the newest window rolled up by `roll_due` (None before the first run)."""
    state = store.get(store.name(STATE), WATERMARK_ID)
    return int(state["watermark_ms"]) if state and state.get("watermark_ms") is not None else None


def advance_watermark(store: SearchStore, watermark_ms: int) -> None:
    """Move the watermark to `watermark_ms` unless it is already further; atomic on the engine."""
    index = store.name(STATE)
    updated = iso_ms(now_ms())
    body = {
        "script": {
            "lang": "painless",
            "source": "if (ctx._source.watermark_ms == null || ctx._source.watermark_ms < params.w) "
                      "{ ctx._source.watermark_ms = params.w; ctx._source.updated_at = params.at } "
                      "else { ctx.op = 'noop' }",
            "params": {"w": watermark_ms, "at": updated},
        },
        "upsert": {"watermark_ms": watermark_ms, "updated_at": updated},
    }
    store.update(index, WATERMARK_ID, body)


def set_watermark(store: SearchStore, watermark_ms: int) -> None:
    """Put the watermark anywhere, also backwards (operators and tests: "pretend beat was down")."""
    store.put(store.name(STATE), WATERMARK_ID, {"watermark_ms": watermark_ms, "updated_at": iso_ms(now_ms())},
              refresh=True)


def first_request_ms(store: SearchStore) -> int | None:
    """Start time of the oldest stored request, where a first run begins."""
    answer = store.search(store.name(TRACES), {
        "size": 0, "track_total_hits": False, "query": {"term": {"is_request": True}},
        "aggs": {"first": {"min": {"field": "@timestamp"}}}})
    value = ((answer.get("aggregations") or {}).get("first") or {}).get("value")
    return int(value) if value is not None else None


# --- runs -----------------------------------------------------------------------------------------
@dataclass
class RunResult:
    windows: list[int] = field(default_factory=list)
    hours: list[int] = field(default_factory=list)
    documents: int = 0
    watermark_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"windows": len(self.windows), "hours": len(self.hours), "documents": self.documents,
                "first_window": iso_ms(self.windows[0]) if self.windows else None,
                "last_window": iso_ms(self.windows[-1]) if self.windows else None,
                "watermark": iso_ms(self.watermark_ms) if self.watermark_ms is not None else None}


def roll_windows(store: SearchStore, windows: Iterable[int], closed_until_ms: int, now: int, result: RunResult,
                 *, advance: bool) -> None:
    """Roll windows oldest first, an hour at a time; after each hour, roll it if closed and save progress."""
    width = store.settings.rollup_bucket_minutes * 60_000
    for _, hour_windows in groupby(sorted(windows), key=lambda w: floor_to(w, HOUR_MS)):
        group = list(hour_windows)
        # Windows of one hour come contiguous from the planners; one aggregation covers them all.
        done_until = group[-1] + width
        result.documents += roll_span(store, group[0], done_until, now=now)
        result.windows.extend(group)
        for hour in closed_hours(group, min(done_until, closed_until_ms)):
            result.documents += roll_hour(store, hour, now=now)
            result.hours.append(hour)
        if advance:
            advance_watermark(store, done_until)
            result.watermark_ms = max(result.watermark_ms or 0, done_until)


def roll_due(store: SearchStore, now: int | None = None) -> RunResult:
    """What beat runs every minute: new closed windows, recent ones again (late spans), catch-up."""
    now = now if now is not None else now_ms()
    plan = WindowPlan.from_settings(store.settings)
    watermark = get_watermark(store)
    first = first_request_ms(store) if watermark is None else None
    windows = due_windows(plan, now, watermark, first)
    result = RunResult(watermark_ms=watermark)
    if not windows:
        if watermark is None:
            # Nothing stored yet: start from here, so the next run does not look for old data again.
            advance_watermark(store, plan.last_closed_end(now))
            result.watermark_ms = plan.last_closed_end(now)
        return result
    roll_windows(store, windows, plan.last_closed_end(now), now, result, advance=True)
    log.info("rollup run: %s", result.as_dict())
    return result


def backfill(store: SearchStore, start_ms: int, end_ms: int, now: int | None = None) -> RunResult:
    """Re-roll every closed window touching [start_ms, end_ms) and the closed hours they belong to.

    Safe to repeat and to run while beat runs. It does not move the watermark: catch-up stays beat's job.
    """
    now = now if now is not None else now_ms()
    plan = WindowPlan.from_settings(store.settings)
    closed_end = plan.last_closed_end(now)
    windows = windows_between(start_ms, min(end_ms, closed_end), plan.window_ms)
    result = RunResult(watermark_ms=get_watermark(store))
    roll_windows(store, windows, closed_end, now, result, advance=False)
    return result


# --- retention ------------------------------------------------------------------------------------
def expired_indices(names: Iterable[str], prefix: str, now: int, retention_days: int) -> list[str]:
    """Monthly metrics indices whose whole month is older than the retention (pure)."""
    cutoff = now - retention_days * 86_400_000
    out = []
    stem = f"{prefix}metrics-apm-"
    for name in names:
        suffix = name[len(stem):] if name.startswith(stem) else ""
        try:
            year, month = (int(part) for part in suffix.split("."))
            month_end_s = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
        except (ValueError, OverflowError):
            continue  # not one of ours
        if month_end_s * 1000 <= cutoff:
            out.append(name)
    return sorted(out)


def drop_expired(store: SearchStore, now: int | None = None) -> list[str]:
    """Delete monthly metrics indices older than METRICS_RETENTION_DAYS; returns their names."""
    now = now if now is not None else now_ms()
    pattern = docs.metrics_pattern(store.settings)
    expired = expired_indices(store.list_indices(pattern), store.settings.index_prefix, now,
                              store.settings.metrics_retention_days)
    for name in expired:
        store.delete_index(name)
        log.info("deleted expired rollup index %s", name)
    return expired
