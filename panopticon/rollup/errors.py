"""Error-group rollups: per window and per hour, how many logs each error group had, per service, environment
and endpoint. A `job.Kind` (listed in `kinds.py`), so they follow what was stored like the request rollups do.

Writing. The kind's scan finds the windows (by event time) of ERROR/FATAL logs stored since its own mark
(`rollup-progress-errors`); each such window is rolled again whole with one aggregation over `logs-apm`
per contiguous run of windows, and its hour is merged into hourly documents. A document per (tier,
fingerprint, service, environment, endpoint, window) in the monthly index `errors-apm-YYYY.MM` of the
window's own time, under an id derived from that key: a re-roll overwrites it. It holds the count, the
first and last occurrence (event times), the newest message, type and level, and the trace ids of the
newest occurrences.

Reading. `GroupStats` is what one error group adds up to in a slice of time; raw logs (`query/errors.py`)
and rollup documents (`rollup_groups`) both answer in it and merge exactly (counts add, first/last are a
min/max). `unrolled_windows` says which windows of a range still have error logs stored at or after the
kind's mark: those are read raw, so a count is exact for any range, late logs included.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import orjson

from panopticon.flow import ERRORS, LOGS
from panopticon.model.times import iso_ms, iso_to_ms, now_ms
from panopticon.rollup import documents as docs
from panopticon.rollup.job import Kind, RunResult, check_stored, expired_indices, get_mark, roll_in_runs
from panopticon.rollup.read import TimeLeft, stored_since_by_window, tier_segments
from panopticon.rollup.windows import HOUR_MS, MINUTE_MS
from panopticon.settings import Settings
from panopticon.storage import SearchStore

PROGRESS_ID = "rollup-progress-errors"
SCAN_FILTERS: tuple[dict[str, Any], ...] = ({"exists": {"field": "fingerprint"}},)
PAGE_KEYS = 200  # composite keys per page when rolling (each with two small top_hits)
GROUP_PAGE = 100  # groups per page when reading (each with its trend and top terms)
SAMPLES = 3  # trace ids kept per document
TOP_TERMS = 10  # services / environments / endpoints shown per group
BULK_DOCS = 500
MAX_MESSAGE_CHARS = 2000


# --- what one group adds up to ----------------------------------------------------------------------
@dataclass
class GroupStats:
    """One error group in a slice of time; merges exactly with another slice (see the module docstring)."""

    count: int = 0
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    latest_ms: int | None = None  # when `message`, `error_type`, `level`, `service` were seen
    message: str | None = None
    error_type: str | None = None
    level: str | None = None
    service: str | None = None
    services: Counter[str] = field(default_factory=Counter)
    environments: Counter[str] = field(default_factory=Counter)
    endpoints: Counter[str] = field(default_factory=Counter)
    trend: Counter[int] = field(default_factory=Counter)  # bucket start -> count
    samples: dict[str, int] = field(default_factory=dict)  # trace id -> when it was seen

    def merge(self, other: GroupStats) -> None:
        self.count += other.count
        self.first_seen_ms = _pick(min, self.first_seen_ms, other.first_seen_ms)
        self.last_seen_ms = _pick(max, self.last_seen_ms, other.last_seen_ms)
        if other.latest_ms is not None and (self.latest_ms is None or (other.latest_ms, other.message or "") >
                                            (self.latest_ms, self.message or "")):
            self.latest_ms, self.message, self.error_type = other.latest_ms, other.message, other.error_type
            self.level, self.service = other.level, other.service
        self.services.update(other.services)
        self.environments.update(other.environments)
        self.endpoints.update(other.endpoints)
        self.trend.update(other.trend)
        for trace_id, at in other.samples.items():
            self.samples[trace_id] = max(at, self.samples.get(trace_id, at))

    def sample_ids(self, limit: int = 5) -> list[str]:
        """The trace ids of the newest occurrences, newest first (ties by id, so answers are stable)."""
        return [t for t, _ in sorted(self.samples.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def _pick(fn: Any, a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else int(fn(a, b))


# --- documents ----------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Key:
    fingerprint: str
    service: str
    environment: str
    endpoint: str | None = None

    def sort_key(self) -> tuple[str, str, str, str]:
        return self.fingerprint, self.service, self.environment, self.endpoint or ""


@dataclass
class Row:
    """What one document holds."""

    count: int = 0
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    message: str | None = None
    error_type: str | None = None
    level: str | None = None
    samples: list[str] = field(default_factory=list)

    def merge(self, other: Row) -> None:
        """Add a later or earlier part of the same key (hours merge their windows)."""
        newer = other.last_seen_ms is not None and (self.last_seen_ms is None or
                                                    (other.last_seen_ms, other.message or "") >
                                                    (self.last_seen_ms, self.message or ""))
        self.count += other.count
        self.first_seen_ms = _pick(min, self.first_seen_ms, other.first_seen_ms)
        if newer:
            self.message, self.error_type, self.level = other.message, other.error_type, other.level
            self.samples = list(dict.fromkeys([*other.samples, *self.samples]))[:SAMPLES]
        else:
            self.samples = list(dict.fromkeys([*self.samples, *other.samples]))[:SAMPLES]
        self.last_seen_ms = _pick(max, self.last_seen_ms, other.last_seen_ms)


def doc_id(tier: str, key: Key, window_ms: int) -> str:
    text = "\x1f".join((tier, key.fingerprint, key.service, key.environment, key.endpoint or "", str(window_ms)))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def errors_index(settings: Settings, window_ms: int) -> str:
    """The monthly index a window's documents live in, from the window's own time (never from now)."""
    return settings.data_stream(f"{ERRORS}-{time.strftime('%Y.%m', time.gmtime(window_ms / 1000))}")


def errors_indices(settings: Settings, start_ms: int, end_ms: int) -> str:
    """The monthly indices covering [start_ms, end_ms), comma separated."""
    return docs.metrics_indices(settings, start_ms, end_ms, family=ERRORS)


def errors_pattern(settings: Settings) -> str:
    return settings.data_stream(f"{ERRORS}-*")


def to_document(tier: str, key: Key, window_ms: int, row: Row, now: int) -> dict[str, Any]:
    return {"@timestamp": iso_ms(window_ms), "key": doc_id(tier, key, window_ms), "tier": tier,
            "fingerprint": key.fingerprint, "service_name": key.service, "environment": key.environment,
            "endpoint": key.endpoint, "count": row.count,
            "first_seen": iso_ms(row.first_seen_ms) if row.first_seen_ms is not None else None,
            "last_seen": iso_ms(row.last_seen_ms) if row.last_seen_ms is not None else None,
            "message": row.message, "error_type": row.error_type, "level": row.level, "samples": row.samples,
            "updated_at": iso_ms(now)}


def _ms(value: Any) -> int | None:
    return iso_to_ms(value) if isinstance(value, str) else None


def row_of(document: dict[str, Any]) -> Row:
    return Row(int(document["count"]), _ms(document.get("first_seen")), _ms(document.get("last_seen")),
               document.get("message"), document.get("error_type"), document.get("level"),
               list(document.get("samples") or []))


def key_of(document: dict[str, Any]) -> Key:
    return Key(document["fingerprint"], document["service_name"], document["environment"], document.get("endpoint"))


# --- rolling ------------------------------------------------------------------------------------------
def _window_body(start_ms: int, end_ms: int, width_ms: int, after: dict[str, Any] | None) -> dict[str, Any]:
    """ONE aggregation: per (window, group, service, environment, endpoint) of the error logs in [start, end)."""
    composite: dict[str, Any] = {"size": PAGE_KEYS, "sources": [
        {"window": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{width_ms}ms"}}},
        {"fingerprint": {"terms": {"field": "fingerprint"}}},
        {"service": {"terms": {"field": "service_name"}}},
        {"environment": {"terms": {"field": "environment"}}},
        {"endpoint": {"terms": {"field": "endpoint", "missing_bucket": True}}},
    ]}
    if after:
        composite["after"] = after
    # Newest first; ties by the Kafka position, which every stored log has: the same pick on every roll.
    newest = [{"@timestamp": "desc"}, {"kafka.topic": "asc"}, {"kafka.partition": "asc"}, {"kafka.offset": "asc"}]
    return {"size": 0, "track_total_hits": False,
            "query": {"bool": {"filter": [*SCAN_FILTERS, {"range": {"@timestamp": {
                "gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}]}},
            "aggs": {"keys": {"composite": composite, "aggs": {
                "first": {"min": {"field": "@timestamp"}},
                "last": {"max": {"field": "@timestamp"}},
                "latest": {"top_hits": {"size": 1, "sort": newest, "_source": ["message", "error_type", "level"]}},
                "traced": {"filter": {"exists": {"field": "trace_id"}}, "aggs": {"samples": {"top_hits": {
                    "size": SAMPLES, "sort": newest, "_source": ["trace_id"]}}}},
            }}}}


def _row(bucket: dict[str, Any]) -> Row:
    latest = bucket["latest"]["hits"]["hits"]
    source = latest[0]["_source"] if latest else {}
    samples = [hit["_source"]["trace_id"] for hit in bucket["traced"]["samples"]["hits"]["hits"]]
    message = source.get("message")
    return Row(int(bucket["doc_count"]), int(bucket["first"]["value"]), int(bucket["last"]["value"]),
               message[:MAX_MESSAGE_CHARS] if isinstance(message, str) else None, source.get("error_type"),
               source.get("level"), list(dict.fromkeys(samples)))


def aggregate_windows(store: SearchStore, start_ms: int, end_ms: int, width_ms: int) -> dict[int, dict[Key, Row]]:
    windows: dict[int, dict[Key, Row]] = {}
    after = None
    while True:
        answer = store.search(store.name(LOGS), _window_body(start_ms, end_ms, width_ms, after))
        keys = (answer.get("aggregations") or {}).get("keys") or {}
        for bucket in keys.get("buckets", []):
            k = bucket["key"]
            windows.setdefault(int(k["window"]), {})[Key(k["fingerprint"], k["service"], k["environment"],
                                                         k["endpoint"])] = _row(bucket)
        after = keys.get("after_key")
        if not keys.get("buckets") or not after:
            return windows


def write_rows(store: SearchStore, tier: str, windows: dict[int, dict[Key, Row]], now: int) -> int:
    items = [(doc_id(tier, key, window), orjson.dumps(to_document(tier, key, window, row, now)), window)
             for window, rows in sorted(windows.items())
             for key, row in sorted(rows.items(), key=lambda kv: kv[0].sort_key())]
    for start in range(0, len(items), BULK_DOCS):
        chunk = items[start:start + BULK_DOCS]
        for index, part in groupby(chunk, key=lambda item: errors_index(store.settings, item[2])):
            check_stored(store.index_many(index, [(i, body) for i, body, _ in part]))
    return len(items)


def roll_hour(store: SearchStore, hour_ms: int, now: int) -> int:
    """Merge an hour's window documents into its hourly ones."""
    index = errors_index(store.settings, hour_ms)
    store.refresh(index)
    tier = docs.minute_tier(store.settings.rollup_bucket_minutes)
    rows: dict[Key, Row] = {}
    for document in _scan(store, index, [{"term": {"tier": tier}}], hour_ms, hour_ms + HOUR_MS):
        rows.setdefault(key_of(document), Row()).merge(row_of(document))
    return write_rows(store, docs.HOURLY, {hour_ms: rows} if rows else {}, now)


def _scan(store: SearchStore, index: str, filters: list[dict[str, Any]], start_ms: int,
          end_ms: int) -> Iterable[dict[str, Any]]:
    body: dict[str, Any] = {"size": 2000, "track_total_hits": False, "sort": [{"@timestamp": "asc"}, {"key": "asc"}],
                            "query": {"bool": {"filter": [*filters, {"range": {"@timestamp": {
                                "gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}]}}}
    while True:
        hits = store.search(index, body).get("hits", {}).get("hits", [])
        for hit in hits:
            yield hit["_source"]
        if len(hits) < body["size"]:
            return
        body["search_after"] = hits[-1]["sort"]


def roll_error_windows(store: SearchStore, windows: list[int], now: int, result: RunResult) -> None:
    """The kind's roll: these windows again, whole (one aggregation per contiguous run in an hour), then their hours."""
    settings = store.settings
    width = settings.rollup_bucket_minutes * MINUTE_MS
    tier = docs.minute_tier(settings.rollup_bucket_minutes)
    roll_in_runs(store, windows, now, result,
                 roll_span=lambda s, start, end, at: write_rows(s, tier, aggregate_windows(s, start, end, width), at),
                 roll_hour=roll_hour, indices=lambda start, end: errors_indices(settings, start, end))


ERRORS_KIND = Kind("errors", PROGRESS_ID, LOGS, SCAN_FILTERS, roll_error_windows,
                   retention_setting="logs_retention_days")


def drop_expired(store: SearchStore, now: int | None = None) -> list[str]:
    """Delete monthly errors-apm indices older than METRICS_RETENTION_DAYS."""
    now = now if now is not None else now_ms()
    expired = expired_indices(store.list_indices(errors_pattern(store.settings)), store.settings.index_prefix, now,
                              store.settings.metrics_retention_days, family=ERRORS)
    for name in expired:
        store.delete_index(name)
    return expired


# --- reading ------------------------------------------------------------------------------------------
def mark(store: SearchStore) -> int | None:
    """Every error log stored before this is in the error rollups (None before the kind's first complete scan)."""
    return get_mark(store, PROGRESS_ID)


def scope_filters(service: str | None, environment: str | None, fingerprint: str | None) -> list[dict[str, Any]]:
    return [{"term": {name: value}} for name, value in (("service_name", service), ("environment", environment),
                                                        ("fingerprint", fingerprint)) if value is not None]


def unrolled_windows(store: SearchStore, *, service: str | None, environment: str | None, fingerprint: str | None,
                     start_ms: int, end_ms: int, mark_ms: int, time_left: TimeLeft | None = None) -> dict[int, int]:
    """{window: error logs stored at or after `mark_ms`} for the windows of [start_ms, end_ms) in this scope."""
    return stored_since_by_window(store, store.name(LOGS), [*SCAN_FILTERS, *scope_filters(service, environment,
                                                                                           fingerprint)],
                                  start_ms=start_ms, end_ms=end_ms, mark_ms=mark_ms, time_left=time_left)


def segment_filter(segments: list[tuple[str, int, int]], skip: frozenset[int]) -> dict[str, Any]:
    """Documents of these (tier, start, end) pieces, minus the skipped windows (raw logs answer those)."""
    window_tiers = {tier for tier, _, _ in segments if tier != docs.HOURLY}
    should = []
    for tier, start, end in segments:
        clause: dict[str, Any] = {"bool": {"filter": [{"term": {"tier": tier}}, {"range": {"@timestamp": {
            "gte": start, "lt": end, "format": "epoch_millis"}}}]}}
        skipped = sorted(w for w in skip if start <= w < end)
        if skipped and tier in window_tiers:
            clause["bool"]["must_not"] = [{"terms": {"@timestamp": skipped}}]
        should.append(clause)
    return {"bool": {"should": should, "minimum_should_match": 1}}


@dataclass
class RollupRead:
    groups: dict[str, GroupStats] = field(default_factory=dict)
    documents: int = 0
    segments: list[tuple[str, int, int]] = field(default_factory=list)


def _terms(name: str, field_name: str) -> dict[str, Any]:
    return {name: {"terms": {"field": field_name, "size": TOP_TERMS}, "aggs": {"n": {"sum": {"field": "count"}}}}}


def rollup_groups(store: SearchStore, *, service: str | None, environment: str | None, fingerprint: str | None,
                  start_ms: int, end_ms: int, interval_ms: int | None, skip: frozenset[int] = frozenset(),
                  time_left: TimeLeft | None = None) -> RollupRead:
    """GroupStats per fingerprint for a window-aligned [start_ms, end_ms) that rollups answer (`split_range`)."""
    settings = store.settings
    width = settings.rollup_bucket_minutes * MINUTE_MS
    read = RollupRead(segments=tier_segments(start_ms, end_ms, width, interval_ms,
                                             docs.minute_tier(settings.rollup_bucket_minutes), skip))
    sub: dict[str, Any] = {
        "count": {"sum": {"field": "count"}},
        "first": {"min": {"field": "first_seen"}},
        "last": {"max": {"field": "last_seen"}},
        "latest": {"top_hits": {"size": 5, "sort": [{"last_seen": "desc"}, {"key": "asc"}],
                                "_source": ["message", "error_type", "level", "service_name", "samples", "last_seen"]}},
        **_terms("services", "service_name"), **_terms("environments", "environment"),
        **_terms("endpoints", "endpoint"),
    }
    if interval_ms is not None:
        sub["trend"] = {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{interval_ms}ms",
                                           "min_doc_count": 1}, "aggs": {"n": {"sum": {"field": "count"}}}}
    composite: dict[str, Any] = {"size": GROUP_PAGE, "sources": [{"fingerprint": {"terms": {"field": "fingerprint"}}}]}
    body = {"size": 0, "track_total_hits": False,
            "query": {"bool": {"filter": [*scope_filters(service, environment, fingerprint),
                                          segment_filter(read.segments, skip)]}},
            "aggs": {"groups": {"composite": composite, "aggs": sub}}}
    index = errors_indices(settings, start_ms, end_ms)
    while True:
        answer = store.search(index, body, timeout=time_left() if time_left else None)
        found = (answer.get("aggregations") or {}).get("groups") or {}
        for bucket in found.get("buckets", []):
            read.documents += int(bucket["doc_count"])
            read.groups.setdefault(bucket["key"]["fingerprint"], GroupStats()).merge(_stats_of_rollup(bucket))
        if len(found.get("buckets", [])) < GROUP_PAGE or not found.get("after_key"):
            return read
        composite["after"] = found["after_key"]


def _counter(agg: dict[str, Any], value: str | None = "n") -> Counter[str]:
    out: Counter[str] = Counter()
    for bucket in agg.get("buckets", []):
        out[str(bucket["key"])] += int(bucket[value]["value"]) if value else int(bucket["doc_count"])
    return out


def _stats_of_rollup(bucket: dict[str, Any]) -> GroupStats:
    hits = bucket["latest"]["hits"]["hits"]
    stats = GroupStats(count=int(bucket["count"]["value"]), first_seen_ms=_int(bucket["first"]["value"]),
                       last_seen_ms=_int(bucket["last"]["value"]), services=_counter(bucket["services"]),
                       environments=_counter(bucket["environments"]), endpoints=_counter(bucket["endpoints"]))
    if hits:
        newest = hits[0]["_source"]
        stats.latest_ms = _ms(newest.get("last_seen"))
        stats.message, stats.error_type = newest.get("message"), newest.get("error_type")
        stats.level, stats.service = newest.get("level"), newest.get("service_name")
    for hit in hits:  # a document's samples are its newest occurrences: dated by its last one
        at = _ms(hit["_source"].get("last_seen")) or 0
        for trace_id in hit["_source"].get("samples") or []:
            stats.samples[trace_id] = max(at, stats.samples.get(trace_id, at))
    for entry in (bucket.get("trend") or {}).get("buckets", []):
        stats.trend[int(entry["key"])] += int(entry["n"]["value"])
    return stats


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def first_seen_in_rollups(store: SearchStore, fingerprints: list[str],
                          time_left: TimeLeft | None = None) -> dict[str, int]:
    """{fingerprint: its first occurrence in any hourly rollup}: "ever", as far back as the rollups are kept."""
    out: dict[str, int] = {}
    for start in range(0, len(fingerprints), 5000):
        chunk = fingerprints[start:start + 5000]
        body = {"size": 0, "track_total_hits": False,
                "query": {"bool": {"filter": [{"term": {"tier": docs.HOURLY}}, {"terms": {"fingerprint": chunk}}]}},
                "aggs": {"groups": {"terms": {"field": "fingerprint", "size": len(chunk)},
                                    "aggs": {"first": {"min": {"field": "first_seen"}}}}}}
        answer = store.search(errors_pattern(store.settings), body, timeout=time_left() if time_left else None)
        for bucket in ((answer.get("aggregations") or {}).get("groups") or {}).get("buckets", []):
            if bucket["first"]["value"] is not None:
                out[bucket["key"]] = int(bucket["first"]["value"])
    return out
