"""The questions the query service answers, as the API's schemas load them.

Each is what a route's parameters say once their format is checked (types, choices, lengths, ids): times
are still the text the client sent, because only the service, with its clock, knows what `15m` means now;
limits that depend on configuration are the service's to check too. One check, one layer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Times:
    """`start` / `end` as sent (ISO 8601, epoch ms, `now`, or relative such as `15m`); None when absent."""

    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class Paging:
    limit: int = 50
    cursor: str | None = None
    sort: str = "start_time"
    order: str = "desc"


@dataclass(frozen=True)
class SpanSearch:
    times: Times
    page: Paging
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


@dataclass(frozen=True)
class ServiceTraces:
    """Root spans of one service."""

    service: str
    times: Times
    page: Paging
    environment: str | None = None
    status: str | None = None
    error: bool | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None


@dataclass(frozen=True)
class LogSearch:
    times: Times
    page: Paging
    service: str | None = None
    environment: str | None = None
    levels: tuple[str, ...] = ()
    trace_id: str | None = None
    span_id: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class TraceLookup:
    trace_id: str
    service: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class SeriesRequest:
    """A service's time series; `interval` as sent (`15m`), None to let the service choose."""

    service: str
    times: Times
    interval: str | None = None
    environment: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class RankingRequest:
    """Services (service None) or the endpoints of one service, ranked."""

    times: Times
    service: str | None = None
    environment: str | None = None
    search: str | None = None
    sort: str = "requests"
    order: str = "desc"
    limit: int = 100
    by_environment: bool = False  # services only: one row per (service, environment)


@dataclass(frozen=True)
class EndpointTracesRequest:
    service: str
    endpoint: str
    times: Times
    environment: str | None = None
    limit: int = 10


@dataclass(frozen=True)
class DependencyRequest:
    """The service map of a range (`/query/dependencies`, and Jaeger's and Zipkin's `dependencies`)."""

    times: Times
    environment: str | None = None
    service: str | None = None


@dataclass(frozen=True)
class CompatTraceSearch:
    """A trace search of the Jaeger or Zipkin API, units already converted (epoch ms, durations in ms).

    None for a time means "as the API's default": end now, start `lookback_ms` (else `default_lookback_ms`)
    before end. Each API's own rules for its parameters are applied by its routes; the clock is the service's.
    """

    default_lookback_ms: int
    limit: int
    start_ms: int | None = None
    end_ms: int | None = None
    lookback_ms: int | None = None
    service: str | None = None
    operation: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()
    remote_service: str | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None


@dataclass(frozen=True)
class ErrorGroupsRequest:
    """Error groups of a range, sorted by count, last_seen or first_seen."""

    times: Times
    service: str | None = None
    environment: str | None = None
    sort: str = "count"
    order: str = "desc"
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class ErrorGroupRequest:
    """One error group and its recent occurrences."""

    fingerprint: str
    times: Times
    environment: str | None = None
    limit: int = 20


@dataclass(frozen=True)
class AlertHistoryRequest:
    """State changes of the alert rules, newest first."""

    times: Times
    rule: str | None = None
    state: str | None = None
    limit: int = 50
    cursor: str | None = None
