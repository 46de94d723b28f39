"""Request statistics straight from `traces-apm`: the one builder and reader of raw aggregations.

`raw_aggregates` answers "the Aggregates of requests in [start, end)", optionally per time bucket and
per service or endpoint. The metrics, services and endpoints pages all ask it, so the definitions of
request (`is_request`), endpoint (`endpoint`) and error (`is_error`) are applied in one place and the
numbers agree across pages. The rollup path produces the same `Aggregate` objects from rollup
documents, so a caller can merge old (rollup) and new (raw) parts of a range without caring which
is which.

Why a paginated `composite` aggregation on (group, time, duration_bucket, is_error): each composite
bucket gives an exact count for one histogram cell, split by error, with the sum/min/max of its
durations -- everything an `Aggregate` holds, exactly, with percentiles from the same
`duration_bucket` histogram the rollups store. Nested `date_histogram` x `histogram` aggregations
would hit the engine's `search.max_buckets` on a busy day at one-minute resolution; composite pages
keep every request bounded (COMPOSITE_PAGE buckets) whatever the range.
"""

from __future__ import annotations

from typing import Any, Literal

from panopticon.query import filters as f
from panopticon.query.deadline import Deadline
from panopticon.query.engine import run_search
from panopticon.rollup.aggregate import Aggregate
from panopticon.storage import TRACES, SearchStore

COMPOSITE_PAGE = 10_000
# The fields of each grouping; the first is the group's name (what `search` matches).
GROUP_FIELDS = {"service": ("service_name",), "endpoint": ("endpoint",),
                "service_environment": ("service_name", "environment")}

GroupBy = Literal["service", "endpoint", "service_environment"] | None
# None, a bucket start (int ms), a group (a name, or (service, environment) for "service_environment"),
# or (group, bucket start)
Key = Any


def raw_filter(*, service: str | None, environment: str | None, endpoint: str | None, start_ms: int,
               end_ms: int, search: str | None = None, group_by: GroupBy = None) -> dict[str, Any]:
    """The requests of [start, end) with the optional filters; `search` is a substring of the group name."""
    return f.bool_filter([
        f.term("is_request", True),
        f.time_range("@timestamp", start_ms, end_ms),
        f.optional_term("service_name", service),
        f.optional_term("environment", environment),
        f.optional_term("endpoint", endpoint),
        f.contains(GROUP_FIELDS[group_by][0], search) if search and group_by else None,
    ])


def raw_aggregates(store: SearchStore, *, service: str | None, environment: str | None, endpoint: str | None,
                   start_ms: int, end_ms: int, interval_ms: int | None, group_by: GroupBy, deadline: Deadline,
                   search: str | None = None) -> dict[Key, Aggregate]:
    """Aggregates of requests in [start_ms, end_ms), keyed as described at `Key`.

    Time buckets start at multiples of `interval_ms` since the epoch (UTC), so the caller can align its
    own buckets and cache keys to them. Only buckets with at least one request are present.
    """
    sources: list[dict[str, Any]] = []
    group_fields = GROUP_FIELDS[group_by] if group_by is not None else ()
    for n, name in enumerate(group_fields):
        sources.append({f"group{n or ''}": {"terms": {"field": name}}})
    if interval_ms is not None:
        sources.append({"time": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{interval_ms}ms"}}})
    sources.append({"bucket": {"terms": {"field": "duration_bucket"}}})
    sources.append({"error": {"terms": {"field": "is_error"}}})
    composite: dict[str, Any] = {"size": COMPOSITE_PAGE, "sources": sources}
    body = {
        "size": 0,
        "track_total_hits": False,
        "query": raw_filter(service=service, environment=environment, endpoint=endpoint, start_ms=start_ms,
                            end_ms=end_ms, search=search, group_by=group_by),
        "aggs": {"cells": {
            "composite": composite,
            "aggs": {"sum": {"sum": {"field": "duration_ms"}}, "min": {"min": {"field": "duration_ms"}},
                     "max": {"max": {"field": "duration_ms"}}},
        }},
    }
    out: dict[Key, Aggregate] = {}
    index = store.name(TRACES)
    while True:
        cells = run_search(store, index, body, deadline).get("aggregations", {}).get("cells", {})
        for cell in cells.get("buckets", []):
            _add_cell(out, cell, len(group_fields), interval_ms is not None)
        after = cells.get("after_key")
        if not after or len(cells.get("buckets", [])) < COMPOSITE_PAGE:
            return out
        composite["after"] = after


def _add_cell(out: dict[Key, Aggregate], cell: dict[str, Any], groups: int, timed: bool) -> None:
    """One composite bucket (one histogram cell of one group / time bucket) into its Aggregate."""
    key = cell["key"]
    grouped = groups > 0
    group = (key["group"] if groups == 1 else tuple(key[f"group{n or ''}"] for n in range(groups))) if grouped \
        else None
    when = int(key["time"]) if timed else None
    slot: Key = (group, when) if grouped and timed else group if grouped else when
    count = int(cell["doc_count"])
    cell_aggregate = Aggregate(
        requests=count,
        errors=count if key["error"] in (True, 1, "true") else 0,
        duration_sum=float(cell["sum"]["value"] or 0.0),
        duration_min=cell["min"]["value"],
        duration_max=cell["max"]["value"],
    )
    cell_aggregate.histogram.add_bucket(key["bucket"], count)
    out.setdefault(slot, Aggregate()).merge(cell_aggregate)
