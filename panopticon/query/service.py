"""The query service: the one object every read route calls (model: jaeger's `querysvc`).

Built once per app with the settings, the search store, the Redis cache and a clock. A route loads its
parameters with its schema into a request of `panopticon.query.requests` and calls one method here,
which resolves the times with the clock, checks the limits that depend on configuration, asks the cache
or the engine, and returns the answer as plain data. Domain errors leave as `InvalidParameter` (naming the
parameter) or `StorageError`; the API maps them to its envelope. No Flask here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from panopticon.alert_rules import RuleSet
from panopticon.exceptions import InvalidParameter, StorageError
from panopticon.model.times import iso_ms, now_ms
from panopticon.query import alerts, compat, errors, metrics
from panopticon.query import dependencies as service_map
from panopticon.query.cache import AnswerCache
from panopticon.query.deadline import Deadline
from panopticon.query.raw import GroupBy
from panopticon.query.requests import (
    AlertHistoryRequest,
    CompatTraceSearch,
    DependencyRequest,
    EndpointTracesRequest,
    ErrorGroupRequest,
    ErrorGroupsRequest,
    LogSearch,
    RankingRequest,
    SeriesRequest,
    ServiceTraces,
    SpanSearch,
    Times,
    TraceLookup,
)
from panopticon.query.search import (
    LogQuery,
    Page,
    Sort,
    SpanQuery,
    log_cursor,
    search_logs,
    search_spans,
    span_cursor,
)
from panopticon.query.timeparse import UNITS_MS, TimeRange, parse_duration, resolve_range, round_out
from panopticon.query.traces import get_trace
from panopticon.rollup.errors import PROGRESS_ID as ERROR_PROGRESS_ID
from panopticon.rollup.job import Progress, get_mark, get_progress
from panopticon.settings import Settings
from panopticon.storage import SearchStore, open_store

# Rankings are rounded to whole minutes: refreshes within a minute share one cached answer.
RANKING_STEP_MS = UNITS_MS["m"]
SEARCH_DEFAULT_MS = 15 * UNITS_MS["m"]
STATS_DEFAULT_MS = UNITS_MS["h"]
HISTORY_DEFAULT_MS = UNITS_MS["d"]


@dataclass(frozen=True)
class Answer:
    """An aggregated answer and where it came from: `hit` / `miss` in the cache, or `off` (no Redis)."""

    body: dict[str, Any]
    cache: str


class QueryService:
    def __init__(self, settings: Settings, *, store: SearchStore | None = None,
                 redis_client: redis.Redis | None = None, clock: Callable[[], int] = now_ms,
                 rules: RuleSet | None = None) -> None:
        self.settings = settings
        self.rules = rules or RuleSet()
        self.clock = clock
        self._store = store
        self._redis = redis_client
        self._cache: AnswerCache | None = None
        self._lock = threading.Lock()

    # --- resources, opened on first use (the engine may be down when the app starts) ----------------
    @property
    def store(self) -> SearchStore:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    @property
    def redis(self) -> redis.Redis | None:
        with self._lock:
            if self._redis is None and self.settings.cache_enabled:
                self._redis = redis.Redis.from_url(self.settings.redis_url(), socket_timeout=2,
                                                   socket_connect_timeout=2)
            return self._redis

    @property
    def cache(self) -> AnswerCache:
        if self._cache is None:
            config = self.settings
            self._cache = AnswerCache(self.redis, config.metrics_cache_prefix, config.metrics_cache_ttl_seconds,
                                      config.rollup_cache_ttl_seconds)
        return self._cache

    def deadline(self) -> Deadline:
        """A new request's time budget (QUERY_TIMEOUT_SECONDS), shared by every engine call of its answer."""
        return Deadline(self.settings.query_timeout_seconds)

    # --- searches -------------------------------------------------------------------------------------
    def trace(self, q: TraceLookup) -> dict[str, Any] | None:
        """Every span and log of one trace, or None when there is none."""
        return get_trace(self.store, q.trace_id, service=q.service, environment=q.environment, deadline=self.deadline())

    def spans(self, q: SpanSearch) -> dict[str, Any]:
        window = self._window(q.times, SEARCH_DEFAULT_MS)
        query = SpanQuery(window, service=q.service, environment=q.environment, name=q.name, kind=q.kind,
                          status=q.status, error=q.error, min_duration_ms=q.min_duration_ms,
                          max_duration_ms=q.max_duration_ms, trace_id=q.trace_id, span_id=q.span_id,
                          parent_span_id=q.parent_span_id)
        sort, limit = Sort(q.page.sort, q.page.order), self._limit(q.page.limit)
        after = span_cursor(q.page.cursor, sort)  # every check before the first engine call
        found = search_spans(self.store, query, sort, limit=limit, after=after, deadline=self.deadline())
        return _page(found, window)

    def service_traces(self, q: ServiceTraces) -> dict[str, Any]:
        window = self._window(q.times, SEARCH_DEFAULT_MS)
        query = SpanQuery(window, service=q.service, environment=q.environment, status=q.status, error=q.error,
                          min_duration_ms=q.min_duration_ms, max_duration_ms=q.max_duration_ms, roots_only=True)
        sort, limit = Sort(q.page.sort, q.page.order), self._limit(q.page.limit)
        after = span_cursor(q.page.cursor, sort)
        found = search_spans(self.store, query, sort, limit=limit, after=after, deadline=self.deadline())
        return _page(found, window)

    def logs(self, q: LogSearch) -> dict[str, Any]:
        window = self._window(q.times, SEARCH_DEFAULT_MS)
        query = LogQuery(window, service=q.service, environment=q.environment, levels=q.levels,
                         trace_id=q.trace_id, span_id=q.span_id, text=q.text)
        sort, limit = Sort(q.page.sort, q.page.order), self._limit(q.page.limit)
        after = log_cursor(q.page.cursor, sort)
        found = search_logs(self.store, query, sort, limit=limit, after=after, deadline=self.deadline())
        return _page(found, window)

    # --- statistics -----------------------------------------------------------------------------------
    def series(self, q: SeriesRequest) -> Answer:
        """A service's time series; the range is widened to whole intervals (see `from` / `to`)."""
        now = self.clock()
        window = self._window(q.times, STATS_DEFAULT_MS, now)
        interval_ms = self._interval(q.interval, window, now)
        window = self._rounded(window, interval_ms)
        metrics.check_buckets(window, interval_ms, self.settings.query_max_buckets)
        scope = metrics.Scope(q.service, q.environment, q.endpoint)
        question = {"scope": [scope.service, scope.environment, scope.endpoint], "from": window.start_ms,
                    "to": window.end_ms, "interval": interval_ms}
        deadline = self.deadline()
        return self._cached("series", question, lambda: metrics.time_series(
            self.store, scope, window, interval_ms, deadline=deadline, now_ms=now))

    def ranking(self, q: RankingRequest) -> Answer:
        """Every service (q.service None), or the endpoints of one service, with their numbers."""
        now = self.clock()
        window = self._rounded(self._window(q.times, STATS_DEFAULT_MS, now), RANKING_STEP_MS)
        limit = self._limit(q.limit)
        deadline = self.deadline()
        scope = metrics.Scope(q.service, q.environment)
        question = {"service": q.service, "env": q.environment, "search": q.search, "sort": q.sort,
                    "order": q.order, "limit": limit, "from": window.start_ms, "to": window.end_ms,
                    "by_env": q.by_environment}
        group_by: GroupBy = "endpoint" if q.service is not None else (
            "service_environment" if q.by_environment else "service")

        def compute() -> dict[str, Any]:
            answer = metrics.ranking(self.store, scope, window, group_by, sort=q.sort, order=q.order, limit=limit,
                                     search=q.search, deadline=deadline, now_ms=now)
            return answer if q.service is None else {"service_name": q.service, **answer}

        return self._cached("services" if q.service is None else "endpoints", question, compute)

    def endpoint_traces(self, q: EndpointTracesRequest) -> dict[str, Any]:
        window, limit = self._window(q.times, STATS_DEFAULT_MS), self._limit(q.limit)
        scope = metrics.Scope(q.service, q.environment, q.endpoint)
        return metrics.endpoint_traces(self.store, scope, window, limit=limit, deadline=self.deadline())

    # --- the service map ------------------------------------------------------------------------------
    def dependencies(self, q: DependencyRequest) -> Answer:
        """Nodes and edges of the range, rounded out to whole minutes (refreshes share a cached answer)."""
        now = self.clock()
        window = self._rounded(self._window(q.times, STATS_DEFAULT_MS, now), RANKING_STEP_MS)
        deadline = self.deadline()
        question = {"from": window.start_ms, "to": window.end_ms, "env": q.environment, "service": q.service}
        return self._cached("dependencies", question, lambda: service_map.dependencies(
            self.store, window, environment=q.environment, service=q.service, deadline=deadline, now_ms=now))

    def dependency_links(self, end_ms: int | None, lookback_ms: int) -> list[dict[str, Any]]:
        """Jaeger's and Zipkin's `dependencies`: {parent, child, callCount, errorCount} over [end - lookback, end)."""
        end = self.clock() if end_ms is None else end_ms
        body = self.dependencies(DependencyRequest(Times(str(max(0, end - lookback_ms)), str(end)))).body
        return [{"parent": e["caller"], "child": e["callee"], "callCount": e["calls"], "errorCount": e["errors"]}
                for e in body["edges"]]

    # --- the Jaeger and Zipkin query APIs ------------------------------------------------------------
    def service_names(self) -> list[str]:
        deadline = self.deadline()
        body = self._cached("compat-services", {}, lambda: {"names": compat.service_names(self.store, deadline)}).body
        names: list[str] = body["names"]
        return names

    def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str | None]]:
        """(span name, kind) of one service's spans, of one kind (SERVER, CLIENT, ...) when given."""
        deadline = self.deadline()
        body = self._cached("compat-operations", {"service": service, "kind": kind}, lambda: {
            "pairs": compat.operations(self.store, service, kind, deadline)}).body
        return [(name, found) for name, found in body["pairs"]]

    def tag_values(self, key: str) -> list[str]:
        deadline = self.deadline()
        body = self._cached("compat-tag-values", {"key": key},
                            lambda: {"values": compat.tag_values(self.store, key, deadline)}).body
        values: list[str] = body["values"]
        return values

    def remote_services(self, service: str, lookback_ms: int) -> list[str]:
        links = self.dependency_links(None, lookback_ms)
        return compat.remote_services(((link["parent"], link["child"]) for link in links), service)

    def _trace_query(self, q: CompatTraceSearch) -> compat.TraceQuery:
        now = self.clock()
        end = now if q.end_ms is None else q.end_ms
        start = end - (q.lookback_ms or q.default_lookback_ms) if q.start_ms is None else q.start_ms
        window = resolve_range(str(max(0, start)), str(end), now_ms=now, default_ms=q.default_lookback_ms,
                               max_days=self.settings.query_max_range_days)
        return compat.TraceQuery(window.start_ms, window.end_ms, self._limit(q.limit), q.service, q.operation,
                                 q.tags, q.remote_service, q.min_duration_ms, q.max_duration_ms)

    def jaeger_traces(self, q: CompatTraceSearch) -> list[dict[str, Any]]:
        query = self._trace_query(q)
        return [compat.jaeger_trace(t) for t in compat.find_traces(self.store, query, self.deadline())]

    def zipkin_traces(self, q: CompatTraceSearch) -> list[list[dict[str, Any]]]:
        query = self._trace_query(q)
        return [compat.zipkin_spans(t) for t in compat.find_traces(self.store, query, self.deadline())]

    def jaeger_traces_by_id(self, trace_ids: list[str]) -> list[dict[str, Any]]:
        return [compat.jaeger_trace(t) for t in compat.get_traces(self.store, trace_ids, self.deadline())]

    def zipkin_traces_by_id(self, trace_ids: list[str]) -> list[list[dict[str, Any]]]:
        return [compat.zipkin_spans(t) for t in compat.get_traces(self.store, trace_ids, self.deadline())]

    # --- error groups ---------------------------------------------------------------------------------
    def error_groups(self, q: ErrorGroupsRequest) -> Answer:
        """Every error group of the range, with counts exact for it (rollups + raw, late logs included)."""
        now = self.clock()
        window = self._rounded(self._window(q.times, STATS_DEFAULT_MS, now), RANKING_STEP_MS)
        limit = self._limit(q.limit)
        if q.cursor:
            errors.decode_cursor(q.cursor, q.sort, q.order)  # checked before any engine call
        deadline = self.deadline()
        scope = errors.ErrorScope(q.service, q.environment)
        question = {"service": q.service, "env": q.environment, "sort": q.sort, "order": q.order, "limit": limit,
                    "cursor": q.cursor, "from": window.start_ms, "to": window.end_ms}
        return self._cached("errors", question, lambda: errors.groups_answer(
            self.store, scope, window, sort=q.sort, order=q.order, limit=limit, cursor=q.cursor, deadline=deadline,
            now_ms=now))

    def error_group(self, q: ErrorGroupRequest) -> dict[str, Any] | None:
        """One group over the range and its most recent occurrences; None when it has none in the range."""
        now = self.clock()
        fingerprint = errors.check_fingerprint(q.fingerprint, "fingerprint")
        window = self._rounded(self._window(q.times, STATS_DEFAULT_MS, now), RANKING_STEP_MS)
        limit = self._limit(q.limit)
        return errors.group_answer(self.store, fingerprint, window, environment=q.environment, limit=limit,
                                   deadline=self.deadline(), now_ms=now)

    # --- alerts -----------------------------------------------------------------------------------------
    def alerts(self) -> dict[str, Any]:
        """Every rule of ALERT_RULES_FILE with its current state."""
        return alerts.alerts_answer(self.store, self.rules, self.deadline())

    def alert_figures(self) -> dict[str, Any]:
        """Rules by state, the last evaluation and notifications by status (for /metrics)."""
        return alerts.figures(self.store, self.rules, self.deadline())

    def error_rollup_mark(self) -> int | None:
        """Every error log stored before this is in the error rollups."""
        return get_mark(self.store, ERROR_PROGRESS_ID)

    def alert_history(self, q: AlertHistoryRequest) -> dict[str, Any]:
        """State changes in the range (default: the last 24 hours), newest first."""
        window = self._window(q.times, HISTORY_DEFAULT_MS)
        limit = self._limit(q.limit)
        after = alerts.history_cursor(q.cursor)
        return alerts.history_answer(self.store, window, rule=q.rule, state=q.state, limit=limit, after=after,
                                     deadline=self.deadline())

    # --- operations -----------------------------------------------------------------------------------
    def readiness(self) -> dict[str, bool]:
        """Whether the engine (and Redis, when the cache is on) answer."""
        try:
            checks = {"search": self.store.ping()}
        except StorageError:  # the engine could not even be asked what it is
            checks = {"search": False}
        client = self.redis
        if client is not None:
            try:
                checks["redis"] = bool(client.ping())
            except redis.RedisError:
                checks["redis"] = False
        return checks

    def rollup_progress(self) -> Progress:
        """What the rollups include, as the rollup job stored it (the mark and its last run's figures)."""
        return get_progress(self.store)

    # --- the checks that depend on configuration --------------------------------------------------------
    def _window(self, times: Times, default_ms: int, now: int | None = None) -> TimeRange:
        return resolve_range(times.start, times.end, now_ms=self.clock() if now is None else now,
                             default_ms=default_ms, max_days=self.settings.query_max_range_days)

    def _rounded(self, window: TimeRange, step_ms: int) -> TimeRange:
        """`window` widened to whole steps; the limit holds for what is read, so it is checked again after."""
        rounded = round_out(window, step_ms)
        max_days = self.settings.query_max_range_days
        if rounded.length_ms > max_days * UNITS_MS["d"]:
            raise InvalidParameter("start", f"the range, widened to whole {metrics.format_interval(step_ms)} "
                                            f"intervals, is longer than the limit of {max_days} days "
                                            "(QUERY_MAX_RANGE_DAYS); use a shorter range or interval")
        return rounded

    def _limit(self, limit: int) -> int:
        maximum = self.settings.query_max_page_size
        if limit > maximum:
            raise InvalidParameter("limit", f"must be at most {maximum} (QUERY_MAX_PAGE_SIZE)")
        return limit

    def _interval(self, text: str | None, window: TimeRange, now: int) -> int:
        config = self.settings
        if text is None:
            return metrics.choose_interval(window, config.query_max_buckets)
        interval_ms = parse_duration(text, "interval")
        if interval_ms < UNITS_MS["s"] or interval_ms % UNITS_MS["s"]:
            raise InvalidParameter("interval", "must be a whole number of seconds, at least 1s")
        if interval_ms > config.query_max_range_days * UNITS_MS["d"]:
            raise InvalidParameter("interval", f"must be at most {config.query_max_range_days}d (QUERY_MAX_RANGE_DAYS)")
        window_ms = config.rollup_bucket_minutes * UNITS_MS["m"]
        threshold_ms = config.rollup_threshold_minutes * UNITS_MS["m"]
        reaches_rollups = config.rollup_enabled and window.start_ms < now - threshold_ms
        if reaches_rollups and interval_ms % window_ms:
            # Rollup windows cannot be cut, so such a series would be read from raw spans whatever its length.
            raise InvalidParameter("interval", f"must be a multiple of {config.rollup_bucket_minutes}m "
                                               "(ROLLUP_BUCKET_MINUTES) for a range older than "
                                               f"{config.rollup_threshold_minutes} minutes (ROLLUP_THRESHOLD_MINUTES)")
        return interval_ms

    def _cached(self, kind: str, question: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> Answer:
        body, outcome = self.cache.get_or_compute(kind, question, compute)
        return Answer(body, outcome)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _page(found: Page, window: TimeRange) -> dict[str, Any]:
    return {"items": found.items, "total": found.total, "next_cursor": found.next_cursor,
            "from": iso_ms(window.start_ms), "to": iso_ms(window.end_ms)}
