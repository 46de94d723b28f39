"""The service map: calls between services per window, rolled up by the scheduled work (`job.Kind` EDGES).

What one call is (`calls_of`, pure):

* a *service call*: a span C whose parent span P is stored and belongs to another service. It is one call
  P.service -> C.service, counted in the window of C's start, with C's duration (the callee's own time, on the
  same histogram buckets as the request rollups: the span's stored `duration_bucket`) and C's error flag.
* a *peer call*: a CLIENT or PRODUCER span S that names its callee in its attributes (`peer.service`, else
  `db.system`, `messaging.system`, `server.address`, `net.peer.name`) and that has no child span in another
  service: nobody we have spans from answered it. It is one call S.service -> that name, a node of its own
  (`database` with db.system, `queue` with messaging.system or a PRODUCER span, else `external`), in the
  window of S's start, with S's duration and error flag. A client span that does have a child in another
  service is counted once, as that child's service call, never twice.
* A span whose parent is not stored (yet) makes no call: its caller is unknown.

Why a window's edges change after it was rolled, and which windows a stored span makes dirty: an edge of
window W depends on spans outside W. The caller of a child in W is only known once its parent is stored, and
a peer call of a client span in W disappears once a server child of it is stored; both may come in a later
batch, minutes or hours later, and the parent or child may start in another window (a long parent starts
minutes before its last child; clocks of two services disagree). Parent and children are always in the same
trace, though. So the rule is: a span stored in [mark, cut) makes dirty every window that holds a span of its
trace (`scan_dirty`: the trace ids of what was stored since the last run, then the windows of those traces;
two bounded aggregations whose cost follows what arrived). A parent stored ten minutes after its children
dirties the children's windows, where the call is counted; a late server span dirties its client span's window,
whose peer call it replaces. That is more windows than strictly change, never fewer.

A window is rolled whole: every candidate span of it is read again, parents and children looked up, and every
edge document of the window overwritten by a deterministic id (tier, caller, callee, environments, window). An
edge that no longer exists (a peer call replaced by a service call) is overwritten with zero calls, so no stale
document survives a re-roll; readers skip documents without calls. Hours merge their windows' documents as the
request rollups do (histograms add bucket by bucket, so merges are exact).

The read side follows the same rule (`unrolled_windows`): a window is answered from edge rollups only when no
span of any trace that has a span in it was stored at or after the edges' mark; the other windows are computed
from raw spans by the very code that rolls them (`edges_of_range`). Late edges are therefore counted before
and after their window is rolled again, exactly as late spans are in the request rollups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from panopticon.flow import EDGES, TRACES
from panopticon.model import span_doc_id
from panopticon.model.histogram import Histogram
from panopticon.model.times import iso_ms, iso_to_ms, now_ms
from panopticon.rollup import documents as docs
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.job import Kind, RunResult, Stored, check_stored, roll_in_runs
from panopticon.rollup.read import ReadLimit, TimeLeft, tier_segments
from panopticon.rollup.windows import HOUR_MS, MINUTE_MS, floor_to
from panopticon.storage import SearchStore

PROGRESS_ID = "rollup-progress-edges"
SERVICE, DATABASE, QUEUE, EXTERNAL = "service", "database", "queue", "external"
# Where a CLIENT / PRODUCER span names its callee, in order of preference, and what kind of node that is.
# (None: the kind follows the span: a PRODUCER calls a queue, a CLIENT an external API.)
PEER_ATTRIBUTES = (("peer.service", None), ("db.system", DATABASE), ("messaging.system", QUEUE),
                   ("server.address", None), ("net.peer.name", None))
_SOURCE = ["@timestamp", "trace_id", "span_id", "parent_span_id", "service_name", "environment", "kind",
           "duration_ms", "duration_bucket", "is_error", *(f"attributes.{name}" for name, _ in PEER_ATTRIBUTES)]
SPAN_PAGE = 5000
ID_CHUNK = 5000
TRACE_BATCH = 10_000  # trace ids per dirty-window scan step (one composite page)
WINDOW_PAGE = 1000
DOC_PAGE = 2000
BULK_DOCS = 500


@dataclass(frozen=True, order=True)
class EdgeKey:
    """One edge of the map: who calls whom, in which environments; `callee_kind` says what the callee is."""

    caller: str
    caller_environment: str
    callee: str
    callee_environment: str
    callee_kind: str = SERVICE


@dataclass(frozen=True, slots=True)
class CallSpan:
    """What the edges need of one stored span."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    environment: str
    kind: str | None
    start_ms: int
    duration_ms: float
    bucket: int
    is_error: bool
    peer: tuple[str, str] | None  # (callee name, callee kind) named by its attributes, for CLIENT / PRODUCER

    @property
    def ref(self) -> tuple[str, str]:
        return self.trace_id, self.span_id


def peer_of(kind: str | None, attributes: Mapping[str, Any]) -> tuple[str, str] | None:
    """(callee name, node kind) a CLIENT or PRODUCER span names in its attributes, or None (pure)."""
    if kind not in ("CLIENT", "PRODUCER"):
        return None
    name = node = None
    for attribute, node_kind in PEER_ATTRIBUTES:
        value = attributes.get(attribute)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
            name = name or str(value).strip()[:256]
            if node_kind is not None and node is None:
                node = node_kind
    if name is None:
        return None
    if node is None:
        node = QUEUE if kind == "PRODUCER" else EXTERNAL
    return name, node


def call_span(source: dict[str, Any]) -> CallSpan:
    """A stored span document (or the part `_SOURCE` reads of it) as a CallSpan."""
    attributes = source.get("attributes") or {}
    return CallSpan(
        trace_id=source["trace_id"], span_id=source["span_id"], parent_span_id=source.get("parent_span_id"),
        service=source["service_name"], environment=source.get("environment") or "",
        kind=source.get("kind"), start_ms=iso_to_ms(source["@timestamp"]), duration_ms=float(source["duration_ms"]),
        bucket=int(source["duration_bucket"]), is_error=bool(source.get("is_error")),
        peer=peer_of(source.get("kind"), attributes))


def _count(out: dict[int, dict[EdgeKey, Aggregate]], window: int, key: EdgeKey, span: CallSpan) -> None:
    aggregate = out.setdefault(window, {}).setdefault(key, Aggregate())
    aggregate.requests += 1
    aggregate.errors += span.is_error
    aggregate.duration_sum += span.duration_ms
    low, high = aggregate.duration_min, aggregate.duration_max
    aggregate.duration_min = span.duration_ms if low is None else min(low, span.duration_ms)
    aggregate.duration_max = span.duration_ms if high is None else max(high, span.duration_ms)
    aggregate.histogram.add_bucket(span.bucket, 1)


def calls_of(spans: Iterable[CallSpan], parents: Mapping[tuple[str, str], tuple[str, str]],
             answered: Mapping[tuple[str, str], set[str]], window_ms: int) -> dict[int, dict[EdgeKey, Aggregate]]:
    """{window: {edge: Aggregate}} of the calls these spans make (pure; the rules are in the module docstring).

    `parents`: (trace id, span id) -> (service, environment) of every stored parent of these spans;
    `answered`: (trace id, span id) of a peer-naming span -> the services of its stored children.
    """
    out: dict[int, dict[EdgeKey, Aggregate]] = {}
    for span in spans:
        window = floor_to(span.start_ms, window_ms)
        if span.parent_span_id is not None and span.parent_span_id != span.span_id:
            parent = parents.get((span.trace_id, span.parent_span_id))
            if parent is not None and parent[0] != span.service:
                _count(out, window, EdgeKey(parent[0], parent[1], span.service, span.environment), span)
        if span.peer is not None and not (answered.get(span.ref, set()) - {span.service}):
            name, node = span.peer
            _count(out, window, EdgeKey(span.service, span.environment, name, "", node), span)
    return out


# --- reading spans -------------------------------------------------------------------------------------------
def _candidates_body(start_ms: int, end_ms: int, after: list[Any] | None) -> dict[str, Any]:
    """Spans of [start, end) that may make a call: every span with a parent, and CLIENT / PRODUCER spans."""
    body: dict[str, Any] = {
        "size": SPAN_PAGE, "track_total_hits": False, "_source": _SOURCE,
        "query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}},
            {"bool": {"should": [{"exists": {"field": "parent_span_id"}},
                                 {"terms": {"kind": ["CLIENT", "PRODUCER"]}}], "minimum_should_match": 1}}]}},
        "sort": [{"@timestamp": "asc"}, {"trace_id": "asc"}, {"span_id": "asc"}],
    }
    if after:
        body["search_after"] = after
    return body


def _timeout(time_left: TimeLeft | None) -> float | None:
    return time_left() if time_left else None


def candidate_spans(store: SearchStore, start_ms: int, end_ms: int, *, max_spans: int | None = None,
                    time_left: TimeLeft | None = None) -> list[CallSpan]:
    """Every span of [start, end) that may make a call, page by page; ReadLimit past `max_spans`."""
    out: list[CallSpan] = []
    after = None
    while True:
        answer = store.search(store.name(TRACES), _candidates_body(start_ms, end_ms, after),
                              timeout=_timeout(time_left))
        hits = answer.get("hits", {}).get("hits", [])
        out.extend(call_span(hit["_source"]) for hit in hits)
        if max_spans is not None and len(out) > max_spans:
            raise ReadLimit(f"more than {max_spans} spans")
        if len(hits) < SPAN_PAGE:
            return out
        after = hits[-1]["sort"]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def parents_of(store: SearchStore, spans: list[CallSpan], *,
               time_left: TimeLeft | None = None) -> dict[tuple[str, str], tuple[str, str]]:
    """(trace id, span id) -> (service, environment) of the stored parents of these spans (by document id)."""
    known = {span.ref: (span.service, span.environment) for span in spans}
    wanted = sorted({(s.trace_id, s.parent_span_id) for s in spans
                     if s.parent_span_id is not None and (s.trace_id, s.parent_span_id) not in known})
    found = dict(known)
    for chunk in _chunks([span_doc_id(trace, span) for trace, span in wanted], ID_CHUNK):
        answer = store.search(store.name(TRACES), {
            "size": len(chunk), "track_total_hits": False, "query": {"ids": {"values": chunk}},
            "_source": ["trace_id", "span_id", "service_name", "environment"]}, timeout=_timeout(time_left))
        for hit in answer.get("hits", {}).get("hits", []):
            source = hit["_source"]
            found[(source["trace_id"], source["span_id"])] = (source["service_name"], source.get("environment") or "")
    return found


def child_services(store: SearchStore, spans: list[CallSpan], *,
                   time_left: TimeLeft | None = None) -> dict[tuple[str, str], set[str]]:
    """(trace id, span id) of each peer-naming span -> the services of its stored children (any window)."""
    wanted = {span.ref for span in spans if span.peer is not None}
    out: dict[tuple[str, str], set[str]] = {}
    for chunk in _chunks(sorted(wanted), ID_CHUNK):
        body: dict[str, Any] = {
            "size": SPAN_PAGE, "track_total_hits": False,
            "_source": ["trace_id", "parent_span_id", "service_name"],
            "query": {"bool": {"filter": [{"terms": {"parent_span_id": sorted({s for _, s in chunk})}},
                                          {"terms": {"trace_id": sorted({t for t, _ in chunk})}}]}},
            "sort": [{"trace_id": "asc"}, {"span_id": "asc"}]}
        while True:
            answer = store.search(store.name(TRACES), body, timeout=_timeout(time_left))
            hits = answer.get("hits", {}).get("hits", [])
            for hit in hits:
                source = hit["_source"]
                ref = (source["trace_id"], source["parent_span_id"])
                if ref in wanted:
                    out.setdefault(ref, set()).add(source["service_name"])
            if len(hits) < SPAN_PAGE:
                break
            body["search_after"] = hits[-1]["sort"]
    return out


def edges_of_range(store: SearchStore, start_ms: int, end_ms: int, *, max_spans: int | None = None,
                   time_left: TimeLeft | None = None) -> dict[int, dict[EdgeKey, Aggregate]]:
    """{window: {edge: Aggregate}} for the calls of spans started in [start, end), from raw spans.

    The roll writes these; the read path uses the same for windows the rollups do not include yet.
    """
    window_ms = store.settings.rollup_bucket_minutes * MINUTE_MS
    spans = candidate_spans(store, start_ms, end_ms, max_spans=max_spans, time_left=time_left)
    if not spans:
        return {}
    parents = parents_of(store, spans, time_left=time_left)
    answered = child_services(store, spans, time_left=time_left)
    return calls_of(spans, parents, answered, window_ms)


# --- dirty windows ---------------------------------------------------------------------------------------------
def _traces_stored(store: SearchStore, gte_ms: int, lt_ms: int | None, after: dict[str, Any] | None,
                   time_left: TimeLeft | None = None) -> tuple[list[str], dict[str, Any] | None]:
    """Up to TRACE_BATCH trace ids with a span stored in [gte, lt), and the composite key to go on from."""
    stored: dict[str, Any] = {"gte": gte_ms, "format": "epoch_millis"}
    if lt_ms is not None:
        stored["lt"] = lt_ms
    composite: dict[str, Any] = {"size": TRACE_BATCH, "sources": [{"trace": {"terms": {"field": "trace_id"}}}]}
    if after:
        composite["after"] = after
    answer = store.search(store.name(TRACES), {
        "size": 0, "track_total_hits": False, "query": {"range": {"ingested_at": stored}},
        "aggs": {"traces": {"composite": composite}}}, timeout=_timeout(time_left))
    found = (answer.get("aggregations") or {}).get("traces") or {}
    buckets = found.get("buckets", [])
    more = len(buckets) >= TRACE_BATCH and found.get("after_key")
    return [b["key"]["trace"] for b in buckets], (found["after_key"] if more else None)


def _windows_of_traces(store: SearchStore, trace_ids: list[str], *, start_ms: int | None = None,
                       end_ms: int | None = None, time_left: TimeLeft | None = None) -> dict[int, Stored]:
    """{window: Stored} of every window holding a span of these traces (inside [start, end) when given)."""
    window_ms = store.settings.rollup_bucket_minutes * MINUTE_MS
    out: dict[int, Stored] = {}
    for chunk in _chunks(trace_ids, ID_CHUNK):
        filters: list[dict[str, Any]] = [{"terms": {"trace_id": chunk}}]
        if start_ms is not None and end_ms is not None:
            filters.append({"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}})
        composite: dict[str, Any] = {"size": WINDOW_PAGE, "sources": [
            {"window": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{window_ms}ms"}}}]}
        body = {"size": 0, "track_total_hits": False, "query": {"bool": {"filter": filters}},
                "aggs": {"windows": {"composite": composite,
                                     "aggs": {"last_stored": {"max": {"field": "ingested_at"}}}}}}
        while True:
            answer = store.search(store.name(TRACES), body, timeout=_timeout(time_left))
            found = (answer.get("aggregations") or {}).get("windows") or {}
            buckets = found.get("buckets", [])
            for bucket in buckets:
                window = int(bucket["key"]["window"])
                last = int(bucket["last_stored"]["value"] or 0)
                seen = out.get(window)
                out[window] = Stored(window, int(bucket["doc_count"]) + (seen.spans if seen else 0),
                                     max(last, seen.last_stored_ms if seen else 0))
            if len(buckets) < WINDOW_PAGE or not found.get("after_key"):
                break
            composite["after"] = found["after_key"]
    return out


def scan_dirty(store: SearchStore, mark_ms: int, cut_ms: int, size: int,
               after: dict[str, Any] | None) -> tuple[list[Stored], dict[str, Any] | None]:
    """The windows made dirty by spans stored in [mark, cut): every window of their traces (see the module
    docstring), at most `size` a run, in window order within each batch of TRACE_BATCH traces.

    `after` says where a scan that did not finish goes on: the batch (`traces`, a composite key) and the last
    window of it already rolled. Spans stored below the cut do not change, so the same batch comes back.
    """
    batch_after = (after or {}).get("traces")
    done = (after or {}).get("window")
    trace_ids, next_batch = _traces_stored(store, mark_ms, cut_ms, batch_after)
    windows = _windows_of_traces(store, trace_ids)
    pending = [windows[w] for w in sorted(windows) if done is None or w > done]
    chosen = pending[:size]
    if len(pending) > size:
        return chosen, {"traces": batch_after, "window": chosen[-1].window_ms}
    if next_batch is not None:
        return chosen, {"traces": next_batch, "window": None}
    return chosen, None


def unrolled_windows(store: SearchStore, start_ms: int, end_ms: int, mark_ms: int, *, max_traces: int,
                     time_left: TimeLeft | None = None) -> set[int]:
    """Windows of [start, end) whose edges the rollups may not include: a span of one of their traces was
    stored at or after `mark_ms`. ReadLimit past `max_traces` such traces (the rollups are far behind)."""
    trace_ids: list[str] = []
    after = None
    while True:
        found, after = _traces_stored(store, mark_ms, None, after, time_left)
        trace_ids.extend(found)
        if len(trace_ids) > max_traces:
            raise ReadLimit(f"more than {max_traces} traces stored since the service map's last roll")
        if after is None:
            break
    if not trace_ids:
        return set()
    return set(_windows_of_traces(store, trace_ids, start_ms=start_ms, end_ms=end_ms, time_left=time_left))


# --- documents -------------------------------------------------------------------------------------------------
def doc_id(tier: str, key: EdgeKey, window_ms: int) -> str:
    text = "\x1f".join((tier, key.caller, key.caller_environment, key.callee, key.callee_environment,
                        key.callee_kind, str(window_ms)))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def to_document(tier: str, key: EdgeKey, window_ms: int, aggregate: Aggregate, now: int) -> dict[str, Any]:
    indexes, counts = aggregate.histogram.to_arrays()
    return {"@timestamp": iso_ms(window_ms), "key": doc_id(tier, key, window_ms), "tier": tier,
            "caller": key.caller, "caller_environment": key.caller_environment, "callee": key.callee,
            "callee_environment": key.callee_environment, "callee_kind": key.callee_kind,
            "calls": aggregate.requests, "errors": aggregate.errors,
            "duration_sum": round(aggregate.duration_sum, 6), "duration_min": aggregate.duration_min,
            "duration_max": aggregate.duration_max, "histogram": {"indexes": indexes, "counts": counts},
            "updated_at": iso_ms(now)}


def key_of(document: dict[str, Any]) -> EdgeKey:
    return EdgeKey(document["caller"], document["caller_environment"], document["callee"],
                   document["callee_environment"], document["callee_kind"])


def aggregate_of(document: dict[str, Any]) -> Aggregate:
    histogram = document.get("histogram") or {}
    return Aggregate(int(document["calls"]), int(document["errors"]), float(document["duration_sum"]),
                     document.get("duration_min"), document.get("duration_max"),
                     Histogram.from_arrays(histogram.get("indexes", []), histogram.get("counts", [])))


def index_of(store: SearchStore, window_ms: int) -> str:
    return docs.metrics_index(store.settings, window_ms, EDGES)


def indices_of(store: SearchStore, start_ms: int, end_ms: int) -> str:
    return docs.metrics_indices(store.settings, start_ms, end_ms, EDGES)


def scan_edge_documents(store: SearchStore, start_ms: int, end_ms: int, filters: list[dict[str, Any]],
                        time_left: TimeLeft | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(window start, document) of the edge documents of [start, end) matching `filters`, in order."""
    body: dict[str, Any] = {
        "size": DOC_PAGE, "track_total_hits": False,
        "query": {"bool": {"filter": [
            *filters, {"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}]}},
        "sort": [{"@timestamp": "asc"}, {"key": "asc"}]}
    while True:
        answer = store.search(indices_of(store, start_ms, end_ms), body, timeout=_timeout(time_left))
        hits = answer.get("hits", {}).get("hits", [])
        for hit in hits:
            yield int(hit["sort"][0]), hit["_source"]
        if len(hits) < DOC_PAGE:
            return
        body["search_after"] = hits[-1]["sort"]


def _write(store: SearchStore, tier: str, windows: dict[int, dict[EdgeKey, Aggregate]], now: int) -> int:
    """Overwrite the edge documents of these windows; raises unless the engine stored every one."""
    items = [(window, doc_id(tier, key, window), orjson.dumps(to_document(tier, key, window, aggregate, now)))
             for window, edges in sorted(windows.items()) for key, aggregate in sorted(edges.items())]
    for start in range(0, len(items), BULK_DOCS):
        by_index: dict[str, list[tuple[str, bytes]]] = {}
        for window, key_id, body in items[start:start + BULK_DOCS]:
            by_index.setdefault(index_of(store, window), []).append((key_id, body))
        for index, chunk in by_index.items():
            check_stored(store.index_many(index, chunk))
    return len(items)


def _roll_span(store: SearchStore, start_ms: int, end_ms: int, now: int) -> int:
    """Roll the windows of [start, end) (inside one hour): computed edges, and zeros for edges that vanished."""
    tier = docs.minute_tier(store.settings.rollup_bucket_minutes)
    computed = edges_of_range(store, start_ms, end_ms)
    store.refresh(indices_of(store, start_ms, end_ms))
    for window, document in scan_edge_documents(store, start_ms, end_ms, [{"term": {"tier": tier}}]):
        computed.setdefault(window, {}).setdefault(key_of(document), Aggregate())
    return _write(store, tier, computed, now)


def _roll_hour(store: SearchStore, hour_ms: int, now: int) -> int:
    """Merge the hour's window documents into hourly ones (zeros included, so a vanished edge is zeroed too)."""
    tier = docs.minute_tier(store.settings.rollup_bucket_minutes)
    store.refresh(index_of(store, hour_ms))
    merged: dict[EdgeKey, Aggregate] = {}
    for _, document in scan_edge_documents(store, hour_ms, hour_ms + HOUR_MS, [{"term": {"tier": tier}}]):
        merged.setdefault(key_of(document), Aggregate()).merge(aggregate_of(document))
    return _write(store, docs.HOURLY, {hour_ms: merged} if merged else {}, now)


def roll_edge_windows(store: SearchStore, windows: Iterable[int], now: int, result: RunResult) -> None:
    """`Kind.roll` of the service map: these windows again, whole, then their hours."""
    roll_in_runs(store, windows, now, result, roll_span=_roll_span, roll_hour=_roll_hour,
                 indices=lambda start, end: indices_of(store, start, end))


def backfill(store: SearchStore, start_ms: int, end_ms: int, now: int | None = None) -> RunResult:
    """Roll every window touching [start, end) again (operators and benchmarks); the mark does not move."""
    from panopticon.rollup.windows import windows_between

    now = now if now is not None else now_ms()
    width = store.settings.rollup_bucket_minutes * MINUTE_MS
    result = RunResult()
    roll_edge_windows(store, windows_between(start_ms, min(end_ms, now), width), now, result)
    return result


EDGES_KIND = Kind("edges", PROGRESS_ID, TRACES, (), roll_edge_windows, scan=scan_dirty)


# --- reading rollups ------------------------------------------------------------------------------------------
@dataclass
class EdgeAnswer:
    edges: dict[EdgeKey, Aggregate]
    documents: int
    tiers: list[str]


def read_edges(store: SearchStore, start_ms: int, end_ms: int, *, environment: str | None,
               skip: frozenset[int] = frozenset(), time_left: TimeLeft | None = None,
               max_documents: int | None = None) -> EdgeAnswer:
    """The edges of the whole windows of [start, end) from rollups (hourly documents for whole hours without a
    skipped window), leaving out `skip` (windows answered from raw spans)."""
    window_ms = store.settings.rollup_bucket_minutes * MINUTE_MS
    window_tier = docs.minute_tier(store.settings.rollup_bucket_minutes)
    filters: list[dict[str, Any]] = [{"range": {"calls": {"gt": 0}}}]
    if environment is not None:
        filters.append({"term": {"caller_environment": environment}})
    segments = tier_segments(start_ms, end_ms, window_ms, None, window_tier, skip)
    edges: dict[EdgeKey, Aggregate] = {}
    documents = 0
    for tier, seg_start, seg_end in segments:
        for at_ms, document in scan_edge_documents(store, seg_start, seg_end, [*filters, {"term": {"tier": tier}}],
                                                   time_left):
            if tier != docs.HOURLY and at_ms in skip:
                continue
            documents += 1
            if max_documents is not None and documents > max_documents:
                raise ReadLimit(f"more than {max_documents} edge documents")
            edges.setdefault(key_of(document), Aggregate()).merge(aggregate_of(document))
    return EdgeAnswer(edges, documents, sorted({tier for tier, _, _ in segments}))
