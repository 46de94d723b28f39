"""Dashboard statistics: a service's time series, the services overview, the endpoint ranking.

Each answer is shaped from `Aggregate`s that `collect` gets for [start, end): rollups for the old part
of a range, raw spans for the newest part, merged by key. `sources` in every answer says which part of
the range came from where.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from panopticon.exceptions import InvalidParameter
from panopticon.model.times import iso_ms
from panopticon.query import filters as f
from panopticon.query.deadline import Deadline
from panopticon.query.engine import hits, run_search
from panopticon.query.raw import GroupBy, Key, raw_aggregates
from panopticon.query.search import span_out
from panopticon.query.timeparse import UNITS_MS, TimeRange
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.job import get_mark
from panopticon.rollup.read import RangePlan, ReadLimit, read_rollups, split_range, unrolled_windows, with_unrolled
from panopticon.rollup.windows import settled_cut
from panopticon.storage import TRACES, SearchStore

# Intervals chosen when the request gives none: the smallest that keeps the series readable.
INTERVAL_LADDER_MS = [UNITS_MS["m"] * n for n in (1, 5, 10, 15, 30, 60, 180, 360, 720, 1440, 10080)]
TARGET_BUCKETS = 300
SERVICE_SORTS = ("requests", "errors", "error_rate", "p50", "p90", "p95", "p99", "avg_ms", "name")


@dataclass(frozen=True)
class Scope:
    """Which requests: all, or those of one service / environment / endpoint."""

    service: str | None = None
    environment: str | None = None
    endpoint: str | None = None


def choose_interval(window: TimeRange, max_buckets: int) -> int:
    """The smallest ladder interval giving at most TARGET_BUCKETS (and max_buckets) buckets."""
    for step in INTERVAL_LADDER_MS:
        if -(-window.length_ms // step) <= min(TARGET_BUCKETS, max_buckets):
            return step
    return INTERVAL_LADDER_MS[-1]


def check_buckets(window: TimeRange, interval_ms: int, max_buckets: int) -> None:
    """Refuse, before any engine call, a series with more buckets than QUERY_MAX_BUCKETS."""
    count = -(-window.length_ms // interval_ms)
    if count > max_buckets:
        raise InvalidParameter("interval", f"gives {count} buckets over this range, more than the limit of "
                                           f"{max_buckets} (QUERY_MAX_BUCKETS); use a longer interval")


def format_interval(interval_ms: int) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        if interval_ms % UNITS_MS[unit] == 0:
            return f"{interval_ms // UNITS_MS[unit]}{unit}"
    return f"{interval_ms}ms"


def collect(store: SearchStore, scope: Scope, window: TimeRange, *, interval_ms: int | None, group_by: GroupBy,
            deadline: Deadline, now_ms: int, search: str | None = None) -> tuple[dict[Key, Aggregate], dict[str, Any]]:
    """The Aggregates of [start, end) and where they came from.

    Rollups answer the whole windows older than ROLLUP_THRESHOLD_MINUTES whose every span is in the
    rollups (none stored at or after the rollup mark); raw spans answer the rest, late windows included.
    Both give histograms on the same buckets, so merging them by key is exact. `sources` says which part
    came from where, how many late requests were read raw, and whether the answer is `complete`: false
    while part of the range is newer than ROLLUP_SETTLE_SECONDS, where batches still in flight may add to it.
    """
    settings = store.settings
    plan, late = _plan(store, scope, window, interval_ms, deadline, now_ms)
    aggregates: dict[Key, Aggregate] = {}
    for start_ms, end_ms in plan.raw:
        _merge_into(aggregates, raw_aggregates(
            store, service=scope.service, environment=scope.environment, endpoint=scope.endpoint,
            start_ms=start_ms, end_ms=end_ms, interval_ms=interval_ms, group_by=group_by, deadline=deadline,
            search=search))
    rollup_source = None
    if plan.rollup is not None:
        try:
            answer = read_rollups(store, service=scope.service, environment=scope.environment,
                                  endpoint=scope.endpoint, start_ms=plan.rollup[0], end_ms=plan.rollup[1],
                                  interval_ms=interval_ms, group_by=group_by, skip=plan.skip,
                                  time_left=deadline.remaining, max_documents=settings.query_max_rollup_documents)
        except ReadLimit:
            raise InvalidParameter("start", f"the answer needs more than {settings.query_max_rollup_documents} rollup "
                                            "documents (QUERY_MAX_ROLLUP_DOCUMENTS): use a shorter range, a longer "
                                            "interval, or filter by service or environment") from None
        found = answer.aggregates
        if search and group_by:
            found = {k: v for k, v in found.items() if _group_matches(k, search)}
        _merge_into(aggregates, found)
        rollup_source = {"from": iso_ms(plan.rollup[0]), "to": iso_ms(plan.rollup[1]), "documents": answer.documents,
                         "tiers": sorted({tier for tier, _, _ in answer.segments}), "windows_read_raw": len(plan.skip)}
    settled = settled_cut(now_ms, settings.settle_seconds * 1000)
    sources = {"raw": [{"from": iso_ms(a), "to": iso_ms(b)} for a, b in plan.raw], "rollup": rollup_source,
               "late_spans": late, "complete": window.end_ms <= settled, "settled_until": iso_ms(settled)}
    return aggregates, sources


def _plan(store: SearchStore, scope: Scope, window: TimeRange, interval_ms: int | None, deadline: Deadline,
          now_ms: int) -> tuple[RangePlan, int]:
    """The plan, and how many requests of its rollup part were stored after the mark (read raw instead)."""
    settings = store.settings
    all_raw = RangePlan(None, ((window.start_ms, window.end_ms),))
    threshold_ms = settings.rollup_threshold_minutes * UNITS_MS["m"]
    if not settings.rollup_enabled or window.start_ms >= now_ms - threshold_ms:
        return all_raw, 0  # nothing old enough for rollups: no need to read the mark
    window_ms = settings.rollup_bucket_minutes * UNITS_MS["m"]
    plan = split_range(window.start_ms, window.end_ms, now_ms=now_ms,
                       threshold_minutes=settings.rollup_threshold_minutes, window_ms=window_ms,
                       interval_ms=interval_ms)
    if plan.rollup is None:
        return plan, 0
    mark = get_mark(store)
    if mark is None:
        return all_raw, 0  # no scan has completed yet: nothing is known to be in the rollups
    unrolled = unrolled_windows(store, service=scope.service, environment=scope.environment, endpoint=scope.endpoint,
                                start_ms=plan.rollup[0], end_ms=plan.rollup[1], mark_ms=mark,
                                time_left=deadline.remaining)
    return with_unrolled(plan, unrolled, window_ms), sum(unrolled.values())


def _merge_into(target: dict[Key, Aggregate], found: dict[Key, Aggregate]) -> None:
    for key, aggregate in found.items():
        if key in target:
            target[key].merge(aggregate)
        else:
            target[key] = aggregate


def _group_matches(key: Key, search: str) -> bool:
    """The rollup twin of the raw path's case-insensitive substring filter on the group name."""
    group = key[0] if isinstance(key, tuple) else key
    if isinstance(group, tuple):  # (service, environment): the name is the service
        group = group[0]
    return isinstance(group, str) and search.lower() in group.lower()


def stats(aggregate: Aggregate) -> dict[str, Any]:
    """The numbers every page shows for one Aggregate."""
    return {"requests": aggregate.requests, "errors": aggregate.errors, "error_rate": aggregate.error_rate,
            **aggregate.percentiles(), "avg_ms": aggregate.avg_ms,
            "min_ms": aggregate.duration_min, "max_ms": aggregate.duration_max}


def time_series(store: SearchStore, scope: Scope, window: TimeRange, interval_ms: int, *,
                deadline: Deadline, now_ms: int) -> dict[str, Any]:
    """Requests, errors, error rate and p50/p90/p95/p99 per bucket; `window` must be aligned to the interval."""
    by_time, sources = collect(store, scope, window, interval_ms=interval_ms, group_by=None, deadline=deadline,
                               now_ms=now_ms)
    overall = Aggregate()
    buckets = []
    for start in range(window.start_ms, window.end_ms, interval_ms):
        aggregate = by_time.get(start, Aggregate())
        overall.merge(aggregate)
        buckets.append({"time": iso_ms(start), "time_ms": start, **stats(aggregate)})
    return {
        "service_name": scope.service, "environment": scope.environment, "endpoint": scope.endpoint,
        "from": iso_ms(window.start_ms), "to": iso_ms(window.end_ms), "interval": format_interval(interval_ms),
        "interval_ms": interval_ms, "buckets": buckets, "summary": stats(overall), "sources": sources,
    }


def ranking(store: SearchStore, scope: Scope, window: TimeRange, group_by: GroupBy, *, sort: str, order: str,
            limit: int, search: str | None, deadline: Deadline, now_ms: int) -> dict[str, Any]:
    """Services (group_by="service"), services per environment ("service_environment") or endpoints
    ("endpoint") with their numbers, sorted by `sort` (one of SERVICE_SORTS)."""
    groups, sources = collect(store, scope, window, interval_ms=None, group_by=group_by, deadline=deadline,
                              now_ms=now_ms, search=search)
    names = {"service": ("service_name",), "endpoint": ("endpoint",),
             "service_environment": ("service_name", "environment")}[group_by or "service"]
    rows = [{**dict(zip(names, name if isinstance(name, tuple) else (name,), strict=True)), **stats(aggregate)}
            for name, aggregate in groups.items()]
    rows = _sorted(rows, sort if sort != "name" else names[0], names, descending=order == "desc")
    return {"from": iso_ms(window.start_ms), "to": iso_ms(window.end_ms), "total": len(rows),
            "items": rows[:limit], "sources": sources}


def _sorted(rows: list[dict[str, Any]], key: str, names: tuple[str, ...], *,
            descending: bool) -> list[dict[str, Any]]:
    """Sort on `key` with rows lacking a value last either way; ties by name(s) (sorts are stable)."""
    rows = sorted(rows, key=lambda row: tuple(row[name] for name in names))
    present = [row for row in rows if row[key] is not None]
    absent = [row for row in rows if row[key] is None]
    return sorted(present, key=lambda row: row[key], reverse=descending) + absent


def endpoint_traces(store: SearchStore, scope: Scope, window: TimeRange, *, limit: int,
                    deadline: Deadline) -> dict[str, Any]:
    """The most recent failed requests and the slowest requests of one endpoint, with their trace ids."""
    base = [f.term("is_request", True), f.time_range("@timestamp", window.start_ms, window.end_ms),
            f.term("service_name", scope.service), f.term("endpoint", scope.endpoint),
            f.optional_term("environment", scope.environment)]
    index = store.name(TRACES)
    errors = run_search(store, index, {
        "query": f.bool_filter([*base, f.term("is_error", True)]), "size": limit,
        "sort": [{"@timestamp": "desc"}, {"trace_id": "asc"}, {"span_id": "asc"}]}, deadline)
    slow = run_search(store, index, {
        "query": f.bool_filter(base), "size": limit,
        "sort": [{"duration_ms": "desc"}, {"trace_id": "asc"}, {"span_id": "asc"}]}, deadline)
    return {"service_name": scope.service, "endpoint": scope.endpoint, "from": iso_ms(window.start_ms),
            "to": iso_ms(window.end_ms), "errors": [span_out(hit) for hit in hits(errors)],
            "slow": [span_out(hit) for hit in hits(slow)]}
