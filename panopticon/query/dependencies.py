"""The service map's answer: edges from the edge rollups (raw spans only where the rollups may be behind), and
nodes with their own request figures.

Edges: the whole windows of the range are read from edge rollups (`rollup/edges.py`) unless a span of one of
their traces was stored at or after the edges' mark; those windows, the partial windows at both ends, and
everything before the first complete scan (no mark) or with ROLLUP_ENABLED=false are computed from raw spans
by the same code the rollup runs, bounded by MAX_RAW_SPANS. There is no ROLLUP_THRESHOLD_MINUTES here: the
mark alone says what the rollups include, so an hour's map reads about 57 minutes of rollups.

Nodes: every service with requests in the range (from `metrics.collect`, so exactly the services page's
numbers), and every callee of an edge; a database, queue or external API has no spans of its own, so its
figures are those of the calls made to it.
"""

from __future__ import annotations

from typing import Any

from panopticon.exceptions import InvalidParameter
from panopticon.model.times import iso_ms
from panopticon.query import metrics
from panopticon.query.deadline import Deadline
from panopticon.query.timeparse import TimeRange
from panopticon.rollup import edges as rollup_edges
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.edges import SERVICE, EdgeKey
from panopticon.rollup.job import get_mark
from panopticon.rollup.read import RangePlan, ReadLimit, with_unrolled
from panopticon.rollup.windows import MINUTE_MS, ceil_to, floor_to, settled_cut
from panopticon.storage import SearchStore

MAX_RAW_SPANS = 200_000  # spans one answer may read to compute edges from raw spans
MAX_TRACES_SINCE_MARK = 100_000


def _plan(store: SearchStore, window: TimeRange, deadline: Deadline) -> RangePlan:
    settings = store.settings
    width = settings.rollup_bucket_minutes * MINUTE_MS
    start, end = window.start_ms, window.end_ms
    everything_raw = RangePlan(None, ((start, end),))
    whole_start, whole_end = ceil_to(start, width), floor_to(end, width)
    if not settings.rollup_enabled or whole_end <= whole_start:
        return everything_raw
    mark = get_mark(store, rollup_edges.PROGRESS_ID)
    if mark is None:
        return everything_raw
    edges_raw = [r for r in ((start, whole_start), (whole_end, end)) if r[1] > r[0]]
    plan = RangePlan((whole_start, whole_end), tuple(edges_raw))
    unrolled = rollup_edges.unrolled_windows(store, whole_start, whole_end, mark, max_traces=MAX_TRACES_SINCE_MARK,
                                             time_left=deadline.remaining)
    return with_unrolled(plan, unrolled, width)


def collect_edges(store: SearchStore, window: TimeRange, *, environment: str | None, deadline: Deadline,
                  now_ms: int) -> tuple[dict[EdgeKey, Aggregate], dict[str, Any]]:
    """Every edge of the range (merged over its windows) and where each part came from."""
    settings = store.settings
    try:
        plan = _plan(store, window, deadline)
        edges: dict[EdgeKey, Aggregate] = {}
        for start, end in plan.raw:
            per_window = rollup_edges.edges_of_range(store, start, end, max_spans=MAX_RAW_SPANS,
                                                     time_left=deadline.remaining)
            for found in per_window.values():
                _merge(edges, {k: v for k, v in found.items()
                               if environment is None or k.caller_environment == environment})
        rollup_source = None
        if plan.rollup is not None:
            answer = rollup_edges.read_edges(store, plan.rollup[0], plan.rollup[1], environment=environment,
                                             skip=plan.skip, time_left=deadline.remaining,
                                             max_documents=settings.query_max_rollup_documents)
            _merge(edges, answer.edges)
            rollup_source = {"from": iso_ms(plan.rollup[0]), "to": iso_ms(plan.rollup[1]),
                             "documents": answer.documents, "tiers": answer.tiers, "windows_read_raw": len(plan.skip)}
    except ReadLimit as exc:
        raise InvalidParameter("start", f"the service map of this range needs {exc} (the rollups may be behind, or "
                                        "QUERY_MAX_ROLLUP_DOCUMENTS): use a shorter range") from None
    settled = settled_cut(now_ms, settings.settle_seconds * 1000)
    sources = {"raw": [{"from": iso_ms(a), "to": iso_ms(b)} for a, b in plan.raw], "rollup": rollup_source,
               "complete": window.end_ms <= settled, "settled_until": iso_ms(settled)}
    return edges, sources


def _merge(target: dict[EdgeKey, Aggregate], found: dict[EdgeKey, Aggregate]) -> None:
    for key, aggregate in found.items():
        target.setdefault(key, Aggregate()).merge(aggregate)


def edge_stats(aggregate: Aggregate) -> dict[str, Any]:
    return {"calls": aggregate.requests, "errors": aggregate.errors, "error_rate": aggregate.error_rate,
            **aggregate.percentiles(), "avg_ms": aggregate.avg_ms, "min_ms": aggregate.duration_min,
            "max_ms": aggregate.duration_max}


def by_name(edges: dict[EdgeKey, Aggregate]) -> dict[tuple[str, str], tuple[str, Aggregate]]:
    """Edges merged over environments: (caller, callee) -> (callee kind, Aggregate). A name that is a service
    somewhere is a service node."""
    out: dict[tuple[str, str], tuple[str, Aggregate]] = {}
    for key in sorted(edges):
        pair = (key.caller, key.callee)
        kind, merged = out.get(pair, (key.callee_kind, Aggregate()))
        merged.merge(edges[key])
        out[pair] = (SERVICE if SERVICE in (kind, key.callee_kind) else kind, merged)
    return out


def dependencies(store: SearchStore, window: TimeRange, *, environment: str | None, service: str | None,
                 deadline: Deadline, now_ms: int) -> dict[str, Any]:
    """Nodes and edges of the range; with `service`, only that service and the nodes one call away."""
    edges, edge_sources = collect_edges(store, window, environment=environment, deadline=deadline, now_ms=now_ms)
    merged = by_name(edges)
    if service is not None:
        merged = {pair: value for pair, value in merged.items() if service in pair}
    services, node_sources = metrics.collect(store, metrics.Scope(None, environment), window, interval_ms=None,
                                             group_by="service", deadline=deadline, now_ms=now_ms)
    names = {name for pair in merged for name in pair}
    if service is None:
        names |= set(services)
    else:
        names.add(service)
    kinds: dict[str, str] = {}
    incoming: dict[str, Aggregate] = {}
    for (caller, callee), (kind, aggregate) in merged.items():
        kinds.setdefault(caller, SERVICE)
        kinds[callee] = SERVICE if SERVICE in (kind, kinds.get(callee)) else kind
        incoming.setdefault(callee, Aggregate()).merge(aggregate)
    nodes = []
    for name in sorted(names):
        kind = SERVICE if name in services else kinds.get(name, SERVICE)
        figures = services.get(name) if kind == SERVICE else incoming.get(name)
        nodes.append({"name": name, "kind": kind, **metrics.stats(figures or Aggregate())})
    edge_rows = [{"caller": caller, "callee": callee, "callee_kind": kind, **edge_stats(aggregate)}
                 for (caller, callee), (kind, aggregate) in merged.items()]
    edge_rows.sort(key=lambda row: (-row["calls"], row["caller"], row["callee"]))
    return {"from": iso_ms(window.start_ms), "to": iso_ms(window.end_ms), "environment": environment,
            "service": service, "nodes": nodes, "edges": edge_rows, "sources": {**edge_sources, "nodes": node_sources}}
