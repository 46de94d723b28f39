"""The read side of rollups: plan which part of a range rollups answer, and answer it as Aggregates.

`split_range` cuts a query range into the part rollups may answer (whole windows older than
ROLLUP_THRESHOLD_MINUTES) and the raw part(s) around it. A window of that part is answered from rollups
only when its rollup is known to include everything stored for it: none of its spans was stored at or
after the rollup mark (`job.get_mark`). `unrolled_windows` finds the others with one small aggregation
(only spans stored since the mark are read), and `with_unrolled` hands them to raw spans.
`rollup_aggregates` answers the rest with the same return shape as the raw path's `raw_aggregates`, so
the query layer merges both with `Aggregate.merge` and computes percentiles once per bucket from the
merged histogram (exact merges: never an average of percentiles).

Return shape of both (`query/raw.py` `Key`): {key: Aggregate} where key is `(group, bucket_start_ms)`
with a group_by and an interval, `group` with only a group_by, `bucket_start_ms` with only an interval,
and None with neither. Buckets are aligned to the epoch (as the engine's date_histogram aligns them);
`group` is the endpoint (group_by="endpoint"), the service (group_by="service"), or (service, environment)
(group_by="service_environment").

Tiers: hourly documents answer the whole hours inside the range when the bucket size allows it (no
interval, or a multiple of an hour) and no window of the hour is left to raw spans; window documents
answer the rest. A 7-day range therefore reads about 168 documents per service (and 168 per endpoint
when ranking endpoints), not 10,080.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from panopticon.flow import TRACES
from panopticon.model.histogram import Histogram
from panopticon.rollup import documents as docs
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.windows import HOUR_MS, MINUTE_MS, ceil_to, floor_to, runs
from panopticon.storage import SearchStore

GROUPS = ("endpoint", "service", "service_environment")
PAGE_SIZE = 2000
UNROLLED_PAGE = 1000
Range = tuple[int, int]
AggregateKey = Any  # None, a bucket start (int ms), a group (str), or (group, bucket start)
TimeLeft = Callable[[], float]  # seconds left for this answer; raises when there are none (the caller's deadline)


class ReadLimit(Exception):
    """Answering would read more rollup documents than the caller allows."""


def aggregate_key(group: str | None, bucket_ms: int | None, *, grouped: bool, timed: bool) -> AggregateKey:
    """The key shape shared with the raw path, so rollup and raw Aggregates merge by key."""
    if grouped and timed:
        return group, bucket_ms
    return group if grouped else bucket_ms if timed else None


class RangePlan(NamedTuple):
    """`rollup`: the [start, end) rollups answer, or None; `raw`: the ranges raw spans answer; `skip`: the
    windows inside `rollup` that raw spans answer instead (they are in `raw` too)."""

    rollup: Range | None
    raw: tuple[Range, ...]
    skip: frozenset[int] = frozenset()


def split_range(start_ms: int, end_ms: int, *, now_ms: int, threshold_minutes: int, window_ms: int,
                interval_ms: int | None = None) -> RangePlan:
    """Cut [start_ms, end_ms) into a rollup part and raw parts (pure).

    Rollups may answer only whole windows older than the threshold. The partial window at each edge, the
    newest part, and everything when the bucket size is not a multiple of the window, go to raw spans.
    """
    everything_raw = RangePlan(None, ((start_ms, end_ms),) if end_ms > start_ms else ())
    if interval_ms is not None and interval_ms % window_ms:
        return everything_raw
    rollup_start = ceil_to(start_ms, window_ms)
    rollup_end = min(floor_to(end_ms, window_ms), floor_to(now_ms - threshold_minutes * MINUTE_MS, window_ms))
    if rollup_end <= rollup_start:
        return everything_raw
    raw = []
    if start_ms < rollup_start:
        raw.append((start_ms, rollup_start))
    if rollup_end < end_ms:
        raw.append((rollup_end, end_ms))
    return RangePlan((rollup_start, rollup_end), tuple(raw))


def with_unrolled(plan: RangePlan, unrolled: Iterable[int], window_ms: int) -> RangePlan:
    """`plan` with the windows rollups do not fully include moved to raw spans (pure)."""
    if plan.rollup is None:
        return plan
    start, end = plan.rollup
    skip = frozenset(w for w in unrolled if start <= w < end)
    if not skip:
        return plan
    raw = sorted([*plan.raw, *runs(skip, window_ms)])
    merged: list[Range] = []
    for piece in raw:
        if merged and merged[-1][1] == piece[0]:
            merged[-1] = (merged[-1][0], piece[1])
        else:
            merged.append(piece)
    if len(skip) * window_ms == end - start:  # nothing left for rollups
        return RangePlan(None, tuple(merged))
    return RangePlan(plan.rollup, tuple(merged), skip)


def tier_segments(start_ms: int, end_ms: int, window_ms: int, interval_ms: int | None, window_tier: str,
                  skip: frozenset[int] = frozenset()) -> list[tuple[str, int, int]]:
    """(tier, start, end) pieces covering [start_ms, end_ms): hourly in the middle where allowed (pure).

    An hour holding a skipped window is read from window documents (the skipped ones are left out by the
    reader), because its hourly documents include that window.
    """
    hourly_fits = interval_ms is None or interval_ms % HOUR_MS == 0
    hours_start, hours_end = ceil_to(start_ms, HOUR_MS), floor_to(end_ms, HOUR_MS)
    if not hourly_fits or hours_end <= hours_start:
        return [(window_tier, start_ms, end_ms)]
    dirty_hours = {floor_to(window, HOUR_MS) for window in skip}
    pieces = [(window_tier, start_ms, hours_start)]
    for hour in range(hours_start, hours_end, HOUR_MS):
        tier = window_tier if hour in dirty_hours else docs.HOURLY
        last = pieces[-1]
        if last[0] == tier and last[2] == hour:
            pieces[-1] = (tier, last[1], hour + HOUR_MS)
        else:
            pieces.append((tier, hour, hour + HOUR_MS))
    last = pieces[-1]
    if last[0] == window_tier and last[2] == hours_end:
        pieces[-1] = (window_tier, last[1], end_ms)
    else:
        pieces.append((window_tier, hours_end, end_ms))
    return [(tier, s, e) for tier, s, e in pieces if e > s]


@dataclass
class RollupAnswer:
    aggregates: dict[AggregateKey, Aggregate] = field(default_factory=dict)
    documents: int = 0
    segments: list[tuple[str, int, int]] = field(default_factory=list)


def read_rollups(store: SearchStore, *, service: str | None, environment: str | None, endpoint: str | None,
                 start_ms: int, end_ms: int, interval_ms: int | None, group_by: str | None,
                 skip: frozenset[int] = frozenset(), time_left: TimeLeft | None = None,
                 max_documents: int | None = None) -> RollupAnswer:
    """`rollup_aggregates`, also saying how many documents it read and from which tiers.

    `skip`: windows to leave out (raw spans answer them). `time_left` bounds each engine request by the
    caller's deadline; `max_documents` raises ReadLimit before reading more than that.
    """
    settings = store.settings
    window_ms = settings.rollup_bucket_minutes * MINUTE_MS
    _check(start_ms, end_ms, window_ms, interval_ms, group_by)
    scope = docs.ENDPOINT if group_by == "endpoint" or endpoint is not None else docs.SERVICE
    filters: list[dict[str, Any]] = [{"term": {"scope": scope}}]
    for name, value in (("service_name", service), ("environment", environment), ("endpoint", endpoint)):
        if value is not None:
            filters.append({"term": {name: value}})
    answer = RollupAnswer(segments=tier_segments(start_ms, end_ms, window_ms, interval_ms,
                                                 docs.minute_tier(settings.rollup_bucket_minutes), skip))
    for tier, seg_start, seg_end in answer.segments:
        index = docs.metrics_indices(settings, seg_start, seg_end)
        for at_ms, document in scan_documents(store, index, [*filters, {"term": {"tier": tier}}], seg_start, seg_end,
                                              time_left=time_left):
            if at_ms in skip and tier != docs.HOURLY:
                continue
            answer.documents += 1
            if max_documents is not None and answer.documents > max_documents:
                raise ReadLimit(f"more than {max_documents} rollup documents")
            bucket = None if interval_ms is None else floor_to(at_ms, interval_ms)
            group = _group(document, group_by)
            key = aggregate_key(group, bucket, grouped=group_by is not None, timed=interval_ms is not None)
            answer.aggregates.setdefault(key, Aggregate()).merge(docs.aggregate_of(document))
    return answer


def unrolled_windows(store: SearchStore, *, service: str | None, environment: str | None, endpoint: str | None,
                     start_ms: int, end_ms: int, mark_ms: int,
                     time_left: TimeLeft | None = None) -> dict[int, int]:
    """{window start: requests stored at or after `mark_ms`} for the windows in [start_ms, end_ms) of this scope.

    Those requests are not in the rollups yet, so their windows must be read raw. The search reads only
    spans stored since the mark (usually the last minutes), whatever the range.
    """
    filters: list[dict[str, Any]] = [{"term": {"is_request": True}}]
    for name, value in (("service_name", service), ("environment", environment), ("endpoint", endpoint)):
        if value is not None:
            filters.append({"term": {name: value}})
    return stored_since_by_window(store, store.name(TRACES), filters, start_ms=start_ms, end_ms=end_ms,
                                  mark_ms=mark_ms, time_left=time_left)


def stored_since_by_window(store: SearchStore, index: str, filters: list[dict[str, Any]], *, start_ms: int,
                           end_ms: int, mark_ms: int, time_left: TimeLeft | None = None) -> dict[int, int]:
    """{window start: documents of `index` matching `filters` stored at or after `mark_ms`} for the windows of
    [start_ms, end_ms): what a rollup kind with that mark does not include yet. Every kind reads its own
    documents with this one composite aggregation, paged."""
    window_ms = store.settings.rollup_bucket_minutes * MINUTE_MS
    composite: dict[str, Any] = {"size": UNROLLED_PAGE, "sources": [
        {"window": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{window_ms}ms"}}}]}
    body = {"size": 0, "track_total_hits": False, "query": {"bool": {"filter": [
        *filters,
        {"range": {"ingested_at": {"gte": mark_ms, "format": "epoch_millis"}}},
        {"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}},
    ]}}, "aggs": {"windows": {"composite": composite}}}
    out: dict[int, int] = {}
    while True:
        answer = store.search(index, body, timeout=time_left() if time_left else None)
        found = (answer.get("aggregations") or {}).get("windows") or {}
        buckets = found.get("buckets", [])
        for bucket in buckets:
            out[int(bucket["key"]["window"])] = int(bucket["doc_count"])
        if len(buckets) < UNROLLED_PAGE or not found.get("after_key"):
            return out
        composite["after"] = found["after_key"]


def _group(document: dict[str, Any], group_by: str | None) -> Any:
    """The document's group in the raw path's key shape (`query/raw.py` GROUP_FIELDS)."""
    if group_by == "endpoint":
        return document["endpoint"]
    if group_by == "service":
        return document["service_name"]
    if group_by == "service_environment":
        return document["service_name"], document["environment"]
    return None


def rollup_aggregates(store: SearchStore, *, service: str | None, environment: str | None, endpoint: str | None,
                      start_ms: int, end_ms: int, interval_ms: int | None,
                      group_by: str | None) -> dict[AggregateKey, Aggregate]:
    """{key: Aggregate} (see the module docstring) for a window-aligned range `split_range` gave to rollups.

    Raises ValueError when the range or bucket size cannot be answered from whole windows.
    """
    return read_rollups(store, service=service, environment=environment, endpoint=endpoint, start_ms=start_ms,
                        end_ms=end_ms, interval_ms=interval_ms, group_by=group_by).aggregates


def _check(start_ms: int, end_ms: int, window_ms: int, interval_ms: int | None, group_by: str | None) -> None:
    """The caller's contract (`split_range` gives only such ranges); a ValueError here is a bug upstream."""
    minutes = window_ms // MINUTE_MS
    if start_ms % window_ms or end_ms % window_ms:
        raise ValueError(f"rollups answer whole {minutes}-minute windows; got {start_ms}..{end_ms} (use split_range)")
    if end_ms <= start_ms:
        raise ValueError(f"end ({end_ms}) must be after start ({start_ms})")
    if interval_ms is not None and (interval_ms <= 0 or interval_ms % window_ms):
        raise ValueError(f"interval must be a multiple of {minutes} minutes for rollups, got {interval_ms} ms")
    if group_by is not None and group_by not in GROUPS:
        raise ValueError(f"group_by: expected one of {', '.join(GROUPS)} or none, got {group_by!r}")


_FIELDS = ["service_name", "environment", "endpoint", "requests", "errors", "duration_sum", "duration_min",
           "duration_max", "histogram", "exemplars"]


def scan_documents(store: SearchStore, index: str, filters: list[dict[str, Any]], start_ms: int,
                   end_ms: int, time_left: TimeLeft | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(window start ms, document) of every rollup document matching, in time order, page by page."""
    body: dict[str, Any] = {
        "size": PAGE_SIZE,
        "track_total_hits": False,
        "query": {"bool": {"filter": [
            *filters, {"range": {"@timestamp": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}]}},
        # `key` is unique per document, so (time, key) pages without gaps or repeats.
        "sort": [{"@timestamp": "asc"}, {"key": "asc"}],
        "_source": _FIELDS,
    }
    while True:
        answer = store.search(index, body, timeout=time_left() if time_left else None)
        hits = answer.get("hits", {}).get("hits", [])
        for hit in hits:
            yield int(hit["sort"][0]), hit["_source"]
        if len(hits) < PAGE_SIZE:
            return
        body["search_after"] = hits[-1]["sort"]


# --- cache encoding (ROLLUP_CACHE_TTL_SECONDS) ----------------------------------------------------
def aggregates_to_json(aggregates: dict[AggregateKey, Aggregate]) -> bytes:
    """Bytes for a Redis cache entry; histograms stay histograms, so cached answers merge like fresh ones."""
    rows = []
    for key, a in aggregates.items():
        indexes, counts = a.histogram.to_arrays()
        rows.append([key, a.requests, a.errors, a.duration_sum, a.duration_min, a.duration_max, indexes, counts])
    return orjson.dumps(rows)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def aggregates_from_json(raw: bytes) -> dict[AggregateKey, Aggregate]:
    out: dict[AggregateKey, Aggregate] = {}
    for key, requests, errors, total, low, high, indexes, counts in orjson.loads(raw):
        key = _tuples(key)  # JSON turned the (group, bucket) and (service, environment) tuples into lists
        out[key] = Aggregate(requests, errors, total, low, high, Histogram.from_arrays(indexes, counts))
    return out
