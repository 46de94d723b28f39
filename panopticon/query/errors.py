"""Error groups: `GET /query/errors` and `GET /query/errors/<fingerprint>`, answered like the request statistics.

`collect_groups` gets a `GroupStats` per fingerprint for [start, end): the error rollups answer the whole
windows older than ROLLUP_THRESHOLD_MINUTES whose every error log is in them (none stored at or after the
error kind's mark), raw logs answer the rest, late windows included, so counts are exact for any range.
Both sides bucket the trend on the same epoch-aligned intervals, and merge by fingerprint.

`first_seen` is "ever": the earliest occurrence in any hourly error rollup (kept METRICS_RETENTION_DAYS) and in
the logs the rollups do not include yet, not only in the range asked about. `new` says the group's first
occurrence ever is inside the range.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from panopticon.exceptions import InvalidParameter
from panopticon.model import FINGERPRINT_RE, FINGERPRINT_RULE
from panopticon.model.times import iso_ms, iso_to_ms
from panopticon.query import filters as f
from panopticon.query.deadline import Deadline
from panopticon.query.engine import hits, run_search
from panopticon.query.metrics import INTERVAL_LADDER_MS, format_interval
from panopticon.query.search import log_out
from panopticon.query.timeparse import UNITS_MS, TimeRange
from panopticon.rollup import errors as rollups
from panopticon.rollup.errors import GroupStats
from panopticon.rollup.read import RangePlan, split_range, with_unrolled
from panopticon.rollup.windows import settled_cut
from panopticon.storage import LOGS, SearchStore

SORTS = ("count", "last_seen", "first_seen")
TREND_BUCKETS = 60  # at most this many trend buckets per group
GROUP_PAGE = 100
TOP = 10
SAMPLE_TRACES = 5


@dataclass(frozen=True)
class ErrorScope:
    """Which error logs: all, or those of one service / environment / group."""

    service: str | None = None
    environment: str | None = None
    fingerprint: str | None = None


def trend_interval(window: TimeRange, window_ms: int) -> int:
    """The smallest ladder interval (a whole number of rollup windows) giving at most TREND_BUCKETS buckets."""
    steps = [step for step in INTERVAL_LADDER_MS if step % window_ms == 0]
    for step in steps:
        if -(-window.length_ms // step) <= TREND_BUCKETS:
            return step
    return steps[-1]


def check_fingerprint(value: str, parameter: str) -> str:
    if not FINGERPRINT_RE.match(value):
        raise InvalidParameter(parameter, FINGERPRINT_RULE)
    return value


# --- collecting -----------------------------------------------------------------------------------------
def _plan(store: SearchStore, scope: ErrorScope, window: TimeRange, interval_ms: int, deadline: Deadline,
          now_ms: int) -> tuple[RangePlan, int, int | None]:
    """The plan, the error logs of its rollup part stored after the mark (read raw instead), and the mark."""
    settings = store.settings
    all_raw = RangePlan(None, ((window.start_ms, window.end_ms),))
    threshold_ms = settings.rollup_threshold_minutes * UNITS_MS["m"]
    mark = rollups.mark(store) if settings.rollup_enabled else None
    if mark is None or window.start_ms >= now_ms - threshold_ms:
        return all_raw, 0, mark  # no scan complete yet (nothing known to be rolled), or nothing old enough
    window_ms = settings.rollup_bucket_minutes * UNITS_MS["m"]
    plan = split_range(window.start_ms, window.end_ms, now_ms=now_ms,
                       threshold_minutes=settings.rollup_threshold_minutes, window_ms=window_ms,
                       interval_ms=interval_ms)
    if plan.rollup is None:
        return plan, 0, mark
    unrolled = rollups.unrolled_windows(store, service=scope.service, environment=scope.environment,
                                        fingerprint=scope.fingerprint, start_ms=plan.rollup[0], end_ms=plan.rollup[1],
                                        mark_ms=mark, time_left=deadline.remaining)
    return with_unrolled(plan, unrolled, window_ms), sum(unrolled.values()), mark


def _counter(agg: dict[str, Any]) -> Counter[str]:
    return Counter({str(b["key"]): int(b["doc_count"]) for b in agg.get("buckets", [])})


def _raw_stats(bucket: dict[str, Any]) -> GroupStats:
    latest = bucket["latest"]["hits"]["hits"]
    stats = GroupStats(count=int(bucket["doc_count"]), first_seen_ms=int(bucket["first"]["value"]),
                       last_seen_ms=int(bucket["last"]["value"]), services=_counter(bucket["services"]),
                       environments=_counter(bucket["environments"]), endpoints=_counter(bucket["endpoints"]))
    if latest:
        source = latest[0]["_source"]
        stats.latest_ms = int(latest[0]["sort"][0])
        stats.message, stats.error_type = source.get("message"), source.get("error_type")
        stats.level, stats.service = source.get("level"), source.get("service_name")
    for hit in bucket["traced"]["samples"]["hits"]["hits"]:
        stats.samples[hit["_source"]["trace_id"]] = int(hit["sort"][0])
    for entry in (bucket.get("trend") or {}).get("buckets", []):
        stats.trend[int(entry["key"])] += int(entry["doc_count"])
    return stats


def raw_groups(store: SearchStore, scope: ErrorScope, ranges: tuple[tuple[int, int], ...], interval_ms: int | None,
               deadline: Deadline) -> dict[str, GroupStats]:
    """GroupStats per fingerprint of the error logs in `ranges`, straight from logs-apm."""
    if not ranges:
        return {}
    newest = [{"@timestamp": "desc"}, {"kafka.topic": "asc"}, {"kafka.partition": "asc"}, {"kafka.offset": "asc"}]
    sub: dict[str, Any] = {
        "first": {"min": {"field": "@timestamp"}},
        "last": {"max": {"field": "@timestamp"}},
        "latest": {"top_hits": {"size": 1, "sort": newest,
                                "_source": ["message", "error_type", "level", "service_name"]}},
        "traced": {"filter": {"exists": {"field": "trace_id"}}, "aggs": {"samples": {"top_hits": {
            "size": SAMPLE_TRACES, "sort": newest, "_source": ["trace_id"]}}}},
        "services": {"terms": {"field": "service_name", "size": TOP}},
        "environments": {"terms": {"field": "environment", "size": TOP}},
        "endpoints": {"terms": {"field": "endpoint", "size": TOP}},
    }
    if interval_ms is not None:
        sub["trend"] = {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{interval_ms}ms",
                                           "min_doc_count": 1}}
    composite: dict[str, Any] = {"size": GROUP_PAGE, "sources": [{"fingerprint": {"terms": {"field": "fingerprint"}}}]}
    body = {"size": 0, "track_total_hits": False,
            "query": {"bool": {"filter": [*rollups.SCAN_FILTERS,
                                          *rollups.scope_filters(scope.service, scope.environment, scope.fingerprint),
                                          {"bool": {"should": [f.time_range("@timestamp", a, b) for a, b in ranges],
                                                    "minimum_should_match": 1}}]}},
            "aggs": {"groups": {"composite": composite, "aggs": sub}}}
    out: dict[str, GroupStats] = {}
    while True:
        found = run_search(store, store.name(LOGS), body, deadline).get("aggregations", {}).get("groups", {})
        for bucket in found.get("buckets", []):
            out.setdefault(bucket["key"]["fingerprint"], GroupStats()).merge(_raw_stats(bucket))
        if len(found.get("buckets", [])) < GROUP_PAGE or not found.get("after_key"):
            return out
        composite["after"] = found["after_key"]


def collect_groups(store: SearchStore, scope: ErrorScope, window: TimeRange, *, interval_ms: int,
                   deadline: Deadline, now_ms: int) -> tuple[dict[str, GroupStats], dict[str, Any], int | None]:
    """GroupStats per fingerprint of [start, end), where each part came from, and the error kind's mark."""
    settings = store.settings
    plan, late, mark = _plan(store, scope, window, interval_ms, deadline, now_ms)
    groups = raw_groups(store, scope, plan.raw, interval_ms, deadline)
    rollup_source = None
    if plan.rollup is not None:
        read = rollups.rollup_groups(store, service=scope.service, environment=scope.environment,
                                     fingerprint=scope.fingerprint, start_ms=plan.rollup[0], end_ms=plan.rollup[1],
                                     interval_ms=interval_ms, skip=plan.skip, time_left=deadline.remaining)
        for fingerprint, stats in read.groups.items():
            groups.setdefault(fingerprint, GroupStats()).merge(stats)
        rollup_source = {"from": iso_ms(plan.rollup[0]), "to": iso_ms(plan.rollup[1]), "documents": read.documents,
                         "tiers": sorted({tier for tier, _, _ in read.segments}), "windows_read_raw": len(plan.skip)}
    settled = settled_cut(now_ms, settings.settle_seconds * 1000)
    sources = {"raw": [{"from": iso_ms(a), "to": iso_ms(b)} for a, b in plan.raw], "rollup": rollup_source,
               "late_logs": late, "complete": window.end_ms <= settled, "settled_until": iso_ms(settled)}
    return groups, sources, mark


def first_seen_ever(store: SearchStore, fingerprints: list[str], mark: int | None,
                    deadline: Deadline) -> dict[str, int]:
    """{fingerprint: first occurrence ever}: hourly rollups, and the logs stored since the mark (all of them
    before the first complete scan)."""
    if not fingerprints:
        return {}
    out = rollups.first_seen_in_rollups(store, fingerprints, time_left=deadline.remaining) if mark is not None else {}
    for start in range(0, len(fingerprints), 5000):
        chunk = fingerprints[start:start + 5000]
        clauses: list[dict[str, Any] | None] = [f.terms("fingerprint", chunk)]
        if mark is not None:
            clauses.append({"range": {"ingested_at": {"gte": mark, "format": "epoch_millis"}}})
        body = {"size": 0, "track_total_hits": False, "query": f.bool_filter(clauses),
                "aggs": {"groups": {"terms": {"field": "fingerprint", "size": len(chunk)},
                                    "aggs": {"first": {"min": {"field": "@timestamp"}}}}}}
        answer = run_search(store, store.name(LOGS), body, deadline)
        for bucket in answer.get("aggregations", {}).get("groups", {}).get("buckets", []):
            first = int(bucket["first"]["value"])
            out[bucket["key"]] = min(first, out.get(bucket["key"], first))
    return out


# --- answering --------------------------------------------------------------------------------------------
def group_row(fingerprint: str, stats: GroupStats, first_ever: int | None, window: TimeRange,
              interval_ms: int) -> dict[str, Any]:
    """One group as the API answers it."""
    first = first_ever if first_ever is not None else stats.first_seen_ms
    start = window.start_ms - window.start_ms % interval_ms
    return {
        "fingerprint": fingerprint,
        "message": stats.message,
        "error_type": stats.error_type,
        "level": stats.level,
        "service_name": stats.service,
        "count": stats.count,
        "first_seen": iso_ms(first) if first is not None else None,
        "last_seen": iso_ms(stats.last_seen_ms) if stats.last_seen_ms is not None else None,
        "new": first is not None and first >= window.start_ms,
        "services": _named(stats.services),
        "environments": _named(stats.environments),
        "endpoints": _named(stats.endpoints)[:TOP],
        "trend": [{"time": iso_ms(at), "time_ms": at, "count": stats.trend.get(at, 0)}
                  for at in range(start, window.end_ms, interval_ms)],
        "sample_trace_ids": stats.sample_ids(SAMPLE_TRACES),
    }


def _named(counts: Counter[str]) -> list[dict[str, Any]]:
    return [{"name": k, "count": v} for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _sort_value(row: dict[str, Any], sort: str) -> int:
    if sort == "count":
        return int(row["count"])
    value = row[sort]
    return 0 if value is None else iso_to_ms(value)


def encode_cursor(sort: str, order: str, value: int, fingerprint: str) -> str:
    raw = orjson.dumps({"s": f"{sort}:{order}", "v": [value, fingerprint]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, order: str) -> tuple[int, str]:
    """(sort value, fingerprint) of the last item of the previous page; InvalidParameter when not ours."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii")))
    except (ValueError, binascii.Error, orjson.JSONDecodeError, UnicodeEncodeError):
        raise InvalidParameter("cursor", "not a cursor returned by this API") from None
    values = data.get("v") if isinstance(data, dict) else None
    if not isinstance(values, list) or len(values) != 2:
        raise InvalidParameter("cursor", "not a cursor returned by this API")
    if data.get("s") != f"{sort}:{order}":
        raise InvalidParameter("cursor", f"was made for sort {data.get('s')!r}, not {sort}:{order}")
    value, fingerprint = values
    if isinstance(value, bool) or not isinstance(value, int) or not isinstance(fingerprint, str) \
            or not FINGERPRINT_RE.match(fingerprint) or abs(value) >= 2**63:
        raise InvalidParameter("cursor", "not a cursor returned by this API")
    return value, fingerprint


def page(rows: list[dict[str, Any]], *, sort: str, order: str, limit: int,
         cursor: tuple[int, str] | None) -> tuple[list[dict[str, Any]], str | None]:
    """Rows sorted by (sort value, fingerprint) in `order`, the page after `cursor`, and the next cursor (pure)."""
    descending = order == "desc"
    keyed = sorted(((_sort_value(row, sort), row["fingerprint"]), row) for row in rows)
    if descending:
        keyed.reverse()
    if cursor is not None:
        keyed = [(k, r) for k, r in keyed if (k < cursor if descending else k > cursor)]
    chosen = keyed[:limit]
    more = len(keyed) > limit
    return [r for _, r in chosen], (encode_cursor(sort, order, *chosen[-1][0]) if more and chosen else None)


def groups_answer(store: SearchStore, scope: ErrorScope, window: TimeRange, *, sort: str, order: str, limit: int,
                  cursor: str | None, deadline: Deadline, now_ms: int) -> dict[str, Any]:
    """Every error group of the range (and scope), sorted and paged."""
    after = decode_cursor(cursor, sort, order) if cursor else None
    window_ms = store.settings.rollup_bucket_minutes * UNITS_MS["m"]
    interval_ms = trend_interval(window, window_ms)
    groups, sources, mark = collect_groups(store, scope, window, interval_ms=interval_ms, deadline=deadline,
                                           now_ms=now_ms)
    firsts = first_seen_ever(store, sorted(groups), mark, deadline)
    rows = [group_row(fp, stats, firsts.get(fp), window, interval_ms) for fp, stats in groups.items()]
    items, next_cursor = page(rows, sort=sort, order=order, limit=limit, cursor=after)
    return {"from": iso_ms(window.start_ms), "to": iso_ms(window.end_ms), "interval": format_interval(interval_ms),
            "interval_ms": interval_ms, "total": len(rows), "items": items, "next_cursor": next_cursor,
            "sources": sources}


def occurrence_out(hit: dict[str, Any]) -> dict[str, Any]:
    doc = hit["_source"]
    return {**log_out(hit), "fingerprint": doc.get("fingerprint"), "error_type": doc.get("error_type"),
            "endpoint": doc.get("endpoint"), "new_group": bool(doc.get("new_group", False))}


def group_answer(store: SearchStore, fingerprint: str, window: TimeRange, *, environment: str | None, limit: int,
                 deadline: Deadline, now_ms: int) -> dict[str, Any] | None:
    """One group: its figures over the range and its most recent occurrences; None when it has none there."""
    scope = ErrorScope(environment=environment, fingerprint=fingerprint)
    window_ms = store.settings.rollup_bucket_minutes * UNITS_MS["m"]
    interval_ms = trend_interval(window, window_ms)
    groups, sources, mark = collect_groups(store, scope, window, interval_ms=interval_ms, deadline=deadline,
                                           now_ms=now_ms)
    stats = groups.get(fingerprint)
    if stats is None or not stats.count:
        return None
    firsts = first_seen_ever(store, [fingerprint], mark, deadline)
    recent = run_search(store, store.name(LOGS), {
        "query": f.bool_filter([f.term("fingerprint", fingerprint), f.optional_term("environment", environment),
                                f.time_range("@timestamp", window.start_ms, window.end_ms)]),
        "size": limit, "track_total_hits": False,
        "sort": [{"@timestamp": "desc"}, {"kafka.topic": "asc"}, {"kafka.partition": "asc"}, {"kafka.offset": "asc"}]},
        deadline)
    return {**group_row(fingerprint, stats, firsts.get(fingerprint), window, interval_ms),
            "from": iso_ms(window.start_ms), "to": iso_ms(window.end_ms), "interval": format_interval(interval_ms),
            "interval_ms": interval_ms, "occurrences": [occurrence_out(hit) for hit in hits(recent)],
            "sources": sources}
