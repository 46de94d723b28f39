"""Rolling spans up, driven by what was stored: windows -> documents, their hours -> hourly documents.

Every write is an overwrite by a deterministic id (see `documents.py`), so any window or hour may be
rolled any number of times, by any number of workers at once, and ends with the same documents. That
is what makes re-rolling for late spans, resuming after an outage and operator backfills safe.

Which windows a run rolls follows the data, not the clock. Every stored span carries `ingested_at`
(when its batch started to be stored). The progress marker says: every span stored before `mark` is in
the rollups. Each run takes the *settled* cut C = now - ROLLUP_SETTLE_SECONDS (no batch that started
before C can still be writing: the worker's hard task limit ends it first), finds with ONE bounded
aggregation every window, of any age, that received spans stored in [mark, C), rolls those windows
again (whole: every span of the window, not only the new ones), re-merges their hours, and moves the
mark to C. Spans that arrive hours late, after an outage, or from a producer whose clock runs behind
are therefore counted within two runs of settling; the query path reads any window that still has
spans stored at or after the mark from raw spans (`read.unrolled_windows`), so no answer misses them
in the meantime.

A run that finds more than ROLLUP_MAX_WINDOWS_PER_RUN windows rolls the first ones (in window order)
and stores where the same scan continues (the cut and the aggregation's `after` key); the next run
goes on from exactly there, and the mark moves only when the scan is complete. The data below the cut
does not change, so the resumed scan sees the same windows. Progress is saved with a compare-and-set,
so two beats cannot move it backwards or skip a part.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import orjson

from panopticon.exceptions import EngineRejected, EngineUnavailable
from panopticon.flow import EDGES, METRICS, STATE, TRACES
from panopticon.model.histogram import Histogram
from panopticon.model.times import iso_ms, now_ms
from panopticon.rollup import documents as docs
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.documents import HOURLY, Exemplars, Key, Row
from panopticon.rollup.read import scan_documents
from panopticon.rollup.windows import HOUR_MS, floor_to, hours_of, runs, settled_cut, windows_between
from panopticon.storage import BulkItem, SearchStore

log = logging.getLogger(__name__)

PROGRESS_ID = "rollup-progress"
DAY_MS = 86_400_000
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
            check_stored(store.index_many(index, [(doc_id, body) for doc_id, body, _ in group]))
        written += len(chunk)
    return written


def check_stored(results: list[BulkItem]) -> None:
    """Raise unless the engine stored every rollup document (EngineUnavailable when retrying may help)."""
    failed = [item for item in results if not item.written]
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
    """Merge an hour's window documents into hourly ones (exact: histograms merge bucket by bucket).

    An hour is merged whenever one of its windows was rolled, open or closed: its hourly documents are
    then never behind its window documents once a run ends.
    """
    settings = store.settings
    hour_ms = floor_to(hour_ms, HOUR_MS)
    index = docs.metrics_index(settings, hour_ms)
    store.refresh(index)  # the windows just written must be visible to the merge
    rows: dict[Key, Row] = {}
    tier = docs.minute_tier(settings.rollup_bucket_minutes)
    for _, document in scan_documents(store, index, [{"term": {"tier": tier}}], hour_ms, hour_ms + HOUR_MS):
        rows.setdefault(docs.key_of(document), Row()).merge(docs.row_of(document))
    return write_rows(store, HOURLY, {hour_ms: rows} if rows else {}, now if now is not None else now_ms())


# --- progress -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """What the rollups are known to include. `mark`: every span stored before it (None: nothing yet).
    `cut` and `after`: a scan of [mark, cut) that a run left unfinished, and where it goes on."""

    mark_ms: int | None = None
    cut_ms: int | None = None
    after: dict[str, Any] | None = None
    last_run: dict[str, Any] = field(default_factory=dict)

    def as_document(self) -> dict[str, Any]:
        return {"mark_ms": self.mark_ms, "cut_ms": self.cut_ms, "after": self.after, "last_run": self.last_run,
                "updated_at": iso_ms(now_ms())}


def _progress_of(source: dict[str, Any] | None) -> Progress:
    if not source:
        return Progress()
    return Progress(source.get("mark_ms"), source.get("cut_ms"), source.get("after"), source.get("last_run") or {})


def get_progress(store: SearchStore, progress_id: str = PROGRESS_ID) -> Progress:
    return _progress_of(store.get(store.name(STATE), progress_id))


def get_mark(store: SearchStore, progress_id: str = PROGRESS_ID) -> int | None:
    """Every document of the kind stored (ingested) before this time is in its rollups; None before the first
    complete scan."""
    return get_progress(store, progress_id).mark_ms


def set_mark(store: SearchStore, mark_ms: int | None, progress_id: str = PROGRESS_ID) -> None:
    """Put the mark anywhere, also backwards (operators and tests): the next runs roll what was stored since."""
    store.put(store.name(STATE), progress_id, Progress(mark_ms).as_document(), refresh=True)


# --- finding the windows that received spans -------------------------------------------------------
@dataclass(frozen=True)
class Stored:
    """A window that received spans in the scanned ingest range: how many, and when the newest was stored."""

    window_ms: int
    spans: int
    last_stored_ms: int


def stored_windows_body(mark_ms: int, cut_ms: int, width_ms: int, size: int, after: dict[str, Any] | None = None,
                        filters: tuple[dict[str, Any], ...] = ({"term": {"is_request": True}},)) -> dict[str, Any]:
    """ONE aggregation: the windows (by event time) of the requests stored in [mark_ms, cut_ms), in order.

    It reads only spans stored in that range (a range on `ingested_at`), so its cost follows what arrived
    since the last run, not the age or the size of the data.
    """
    composite: dict[str, Any] = {"size": size, "sources": [
        {"window": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{width_ms}ms"}}}]}
    if after:
        composite["after"] = after
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": [
            *filters,
            {"range": {"ingested_at": {"gte": mark_ms, "lt": cut_ms, "format": "epoch_millis"}}},
        ]}},
        "aggs": {"windows": {"composite": composite, "aggs": {"last_stored": {"max": {"field": "ingested_at"}}}}},
    }


def scan_stored(store: SearchStore, mark_ms: int, cut_ms: int, size: int, after: dict[str, Any] | None = None,
                kind: Kind | None = None) -> tuple[list[Stored], dict[str, Any] | None]:
    """Up to `size` windows with documents of `kind` stored in [mark_ms, cut_ms), and the `after` key to
    continue from (None when the scan is complete)."""
    kind = kind or REQUESTS
    width = store.settings.rollup_bucket_minutes * 60_000
    answer = store.search(store.name(kind.data_stream),
                          stored_windows_body(mark_ms, cut_ms, width, size, after, kind.scan_filters))
    found = (answer.get("aggregations") or {}).get("windows") or {}
    buckets = found.get("buckets", [])
    windows = [Stored(int(b["key"]["window"]), int(b["doc_count"]), int(b["last_stored"]["value"])) for b in buckets]
    more = len(buckets) >= size and found.get("after_key")
    return windows, (found["after_key"] if more else None)


# --- runs -----------------------------------------------------------------------------------------
@dataclass
class RunResult:
    windows: list[int] = field(default_factory=list)
    hours: list[int] = field(default_factory=list)
    documents: int = 0
    mark_ms: int | None = None
    pending: bool = False  # the scan continues on the next run
    late_windows: int = 0  # windows rolled again because spans arrived after the window had settled
    max_lateness_ms: int = 0  # the latest span of this run: stored this long after its window closed
    skipped_expired: int = 0  # windows older than TRACES_RETENTION_DAYS: their raw spans may be gone

    def as_dict(self) -> dict[str, Any]:
        return {"windows": len(self.windows), "hours": len(self.hours), "documents": self.documents,
                "first_window": iso_ms(self.windows[0]) if self.windows else None,
                "last_window": iso_ms(self.windows[-1]) if self.windows else None,
                "mark": iso_ms(self.mark_ms) if self.mark_ms is not None else None, "pending": self.pending,
                "late_windows": self.late_windows, "max_lateness_s": self.max_lateness_ms / 1000,
                "skipped_expired": self.skipped_expired}


def roll_windows(store: SearchStore, windows: Iterable[int], now: int, result: RunResult) -> None:
    """Roll these windows (one aggregation per contiguous run inside an hour), then merge their hours."""
    roll_in_runs(store, windows, now, result, roll_span=lambda s, start, end, at: roll_span(s, start, end, now=at),
                 roll_hour=lambda s, hour, at: roll_hour(s, hour, now=at),
                 indices=lambda start, end: docs.metrics_indices(store.settings, start, end))


def roll_in_runs(store: SearchStore, windows: Iterable[int], now: int, result: RunResult, *,
                 roll_span: Callable[[SearchStore, int, int, int], int],
                 roll_hour: Callable[[SearchStore, int, int], int],
                 indices: Callable[[int, int], str]) -> None:
    """Every kind's roll: the windows again, whole, one `roll_span` per contiguous run inside an hour, then
    `roll_hour` for each of their hours, then a refresh of what was written (`indices` of the span)."""
    width = store.settings.rollup_bucket_minutes * 60_000
    chosen = sorted(set(windows))
    for start, end in runs(chosen, width, within_hour=True):
        result.documents += roll_span(store, start, end, now)
    result.windows.extend(chosen)
    for hour in hours_of(chosen):
        result.documents += roll_hour(store, hour, now)
        result.hours.append(hour)
    if chosen:
        # Visible before the progress says they are complete: a read right after must not see older documents.
        store.refresh(indices(chosen[0], chosen[-1] + width))


@dataclass(frozen=True)
class Kind:
    """One family of rollups that follows its own stored data, with its own progress marker.

    Request statistics are one (`REQUESTS`); the others are listed in `panopticon.rollup.kinds`. Each says
    which stored documents make a window dirty (`data_stream`, `scan_filters`) and how to roll windows
    (`roll`, which must overwrite by deterministic ids and refresh what it wrote before it returns).
    """

    name: str
    progress_id: str
    data_stream: str
    scan_filters: tuple[dict[str, Any], ...]
    roll: Callable[[SearchStore, list[int], int, RunResult], None]
    # Which windows documents stored in [mark, cut) make dirty, when that is not simply their own windows
    # (`scan_stored`): (store, mark, cut, size, after) -> (windows, after). The service map's edges depend on
    # other spans of their trace, so a span stored late dirties the windows of its whole trace.
    scan: Callable[[SearchStore, int, int, int, dict[str, Any] | None],
                   tuple[list[Stored], dict[str, Any] | None]] | None = None
    # The Settings field of how long the raw documents are kept: older windows are never rolled again.
    retention_setting: str = "traces_retention_days"


REQUESTS = Kind("requests", PROGRESS_ID, TRACES, ({"term": {"is_request": True}},), roll_windows)


def roll_due(store: SearchStore, now: int | None = None, kind: Kind | None = None) -> RunResult:
    """What beat runs every ROLLUP_INTERVAL_SECONDS: roll every window that received documents of `kind`
    (request statistics by default) since the last run."""
    kind = kind or REQUESTS
    now = now if now is not None else now_ms()
    settings = store.settings
    width = settings.rollup_bucket_minutes * 60_000
    index = store.name(STATE)
    source, version = store.get_versioned(index, kind.progress_id)
    progress = _progress_of(source)
    mark = progress.mark_ms if progress.mark_ms is not None else 0  # the first run covers everything stored
    cut = progress.cut_ms if progress.cut_ms is not None else settled_cut(now, settings.settle_seconds * 1000)
    result = RunResult(mark_ms=progress.mark_ms)
    if cut <= mark:
        return result
    if kind.scan is not None:
        found, after = kind.scan(store, mark, cut, settings.rollup_max_windows_per_run, progress.after)
    else:
        found, after = scan_stored(store, mark, cut, settings.rollup_max_windows_per_run, progress.after, kind)
    oldest_kept = floor_to(now - int(getattr(settings, kind.retention_setting)) * DAY_MS, width)
    kept = [w for w in found if w.window_ms >= oldest_kept]
    result.skipped_expired = len(found) - len(kept)
    settle_ms = settings.settle_seconds * 1000
    for stored in kept:
        lateness = stored.last_stored_ms - (stored.window_ms + width)
        result.max_lateness_ms = max(result.max_lateness_ms, lateness)
        result.late_windows += lateness > settle_ms
    kind.roll(store, [w.window_ms for w in kept], now, result)
    done = after is None
    result.mark_ms, result.pending = (cut, False) if done else (progress.mark_ms, True)
    following = Progress(cut if done else progress.mark_ms, None if done else cut, None if done else after,
                         {**result.as_dict(), "at": iso_ms(now)})
    if not store.put_if(index, kind.progress_id, following.as_document(), version, refresh=True):
        # Another run saved progress meanwhile; what this one rolled stays valid (overwrites are idempotent).
        log.info("rollup run (%s): progress was moved by another run; keeping theirs", kind.name)
        result.mark_ms = get_mark(store, kind.progress_id)
    if result.windows or result.skipped_expired:
        log.info("rollup run (%s): %s", kind.name, result.as_dict())
    return result


def backfill(store: SearchStore, start_ms: int, end_ms: int, now: int | None = None) -> RunResult:
    """Re-roll every window touching [start_ms, end_ms) (up to now) and the hours they belong to.

    Safe to repeat and to run while beat runs. It does not move the mark: that stays beat's job.
    """
    now = now if now is not None else now_ms()
    width = store.settings.rollup_bucket_minutes * 60_000
    result = RunResult(mark_ms=get_mark(store))
    roll_windows(store, windows_between(start_ms, min(end_ms, now), width), now, result)
    return result


# --- retention ------------------------------------------------------------------------------------
def expired_indices(names: Iterable[str], prefix: str, now: int, retention_days: int,
                    family: str = METRICS) -> list[str]:
    """Monthly indices of `family` (metrics-apm, edges-apm, errors-apm) whose whole month is older than the retention
    (pure)."""
    cutoff = now - retention_days * 86_400_000
    out = []
    stem = f"{prefix}{family}-"
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
    """Delete monthly rollup indices (request statistics and the service map's edges) older than
    METRICS_RETENTION_DAYS; returns their names."""
    now = now if now is not None else now_ms()
    expired = []
    for family in (METRICS, EDGES):
        pattern = store.settings.data_stream(f"{family}-*")
        expired += expired_indices(store.list_indices(pattern), store.settings.index_prefix, now,
                                   store.settings.metrics_retention_days, family)
    for name in expired:
        store.delete_index(name)
        log.info("deleted expired rollup index %s", name)
    return expired
