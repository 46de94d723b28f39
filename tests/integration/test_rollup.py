"""Rollups on the real engine: exact counts, percentiles within 1 % of numpy, late data, catch-up, beat."""

from __future__ import annotations

import time
import uuid

import pytest

from panopticon.api.app import create_app
from panopticon.model.times import now_ms
from panopticon.query.deadline import Deadline
from panopticon.rollup import job
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.documents import HOURLY, metrics_pattern
from panopticon.rollup.read import read_rollups, rollup_aggregates, split_range
from panopticon.rollup.windows import HOUR_MS, MINUTE_MS, floor_to
from panopticon.settings import Settings
from panopticon.storage import SearchStore, open_store
from tests.integration.rollup_data import (
    assert_matches_truth,
    generate,
    raw_aggregates,
    span_message,
    store_spans,
    truth,
)

RANGES = {"1h": HOUR_MS, "6h": 6 * HOUR_MS, "24h": 24 * HOUR_MS}
INTERVALS = {"1m": MINUTE_MS, "15m": 15 * MINUTE_MS, "1h": HOUR_MS, "whole range": None}
GROUPS = {
    "one service": dict(service="checkout", group_by=None),
    "services": dict(service=None, group_by="service"),
    "endpoints of a service": dict(service="checkout", group_by="endpoint"),
}


def _keep(service):
    return (lambda d: d["service_name"] == service) if service else (lambda d: True)


def _metrics(store: SearchStore) -> dict[str, dict]:
    """Every rollup document by id, without updated_at (the one field a re-roll is meant to change)."""
    pattern = metrics_pattern(store.settings)
    store.refresh(pattern)
    answer = store.search(pattern, {"size": 10_000, "query": {"match_all": {}}})
    return {hit["_id"]: {k: v for k, v in hit["_source"].items() if k != "updated_at"}
            for hit in answer["hits"]["hits"]}


def settled(store: SearchStore, stored_ms: int) -> int:
    """A clock at which spans stored at `stored_ms` have settled (what the next run takes in)."""
    return stored_ms + store.settings.settle_seconds * 1000 + 1000


def _roll_until_current(store: SearchStore, now: int) -> list[job.RunResult]:
    """roll_due until its scan is complete (a catch-up is split into runs of ROLLUP_MAX_WINDOWS_PER_RUN)."""
    results = []
    for _ in range(50):
        results.append(job.roll_due(store, now))
        if not results[-1].pending:
            break
    store.refresh(metrics_pattern(store.settings))
    return results


@pytest.fixture(scope="module")
def day_of_spans(stack: Settings):
    """~6000 requests with known durations over the last 25 hours, rolled up to now.

    Shared by the read-only tests of this module (rolling a day up is the slow part); it has its own
    namespace, deleted afterwards.
    """
    settings = stack.replace(index_prefix=f"t{uuid.uuid4().hex[:8]}-", rollup_max_windows_per_run=600)
    store = open_store(settings, setup=True)
    try:
        now = now_ms()
        documents = store_spans(store, generate(6000, now - 25 * HOUR_MS, now - 2 * MINUTE_MS), now)
        runs = _roll_until_current(store, settled(store, now))
        assert len(runs) == 3 and runs[-1].mark_ms is not None  # 1,500 minutes, 600 windows a run
        yield store, documents, now, runs[-1].mark_ms
    finally:
        store.delete_namespace()
        store.close()


def test_rollups_match_numpy_for_every_range_bucket_and_grouping(day_of_spans) -> None:
    store, documents, now, _mark = day_of_spans
    end = floor_to(now, HOUR_MS) - HOUR_MS  # an hour boundary, so long ranges use hourly documents
    for range_name, length in RANGES.items():
        for interval_name, interval in INTERVALS.items():
            for group_name, group in GROUPS.items():
                label = f"{range_name} by {interval_name}, {group_name}"
                # Shifted by 7 minutes: window documents at both edges, hourly ones in between.
                for start, stop in ((end - length, end), (end - length - 7 * MINUTE_MS, end - 7 * MINUTE_MS)):
                    answer = read_rollups(store, environment=None, endpoint=None, start_ms=start, end_ms=stop,
                                          interval_ms=interval, **group)
                    expected = truth(documents, start, stop, interval, group["group_by"], _keep(group["service"]))
                    assert_matches_truth(answer.aggregates, expected, label)
                    # The raw path's engine aggregation gives the very same histograms and counts.
                    raw = raw_aggregates(store, start, stop, interval,
                                         {"service": "service_name", "endpoint": "endpoint"}.get(group["group_by"]),
                                         group["service"])
                    assert {k: (a.requests, a.errors, a.histogram) for k, a in answer.aggregates.items()} == raw
                    if interval in (None, HOUR_MS) and length > HOUR_MS:
                        assert any(tier == HOURLY for tier, _, _ in answer.segments), label


def test_a_week_reads_hourly_documents_not_minutes(day_of_spans) -> None:
    store, _, now, _mark = day_of_spans
    end = floor_to(now, HOUR_MS)
    answer = read_rollups(store, service="checkout", environment="production", endpoint=None,
                          start_ms=end - 7 * 24 * HOUR_MS, end_ms=end, interval_ms=None, group_by=None)
    # 25 hours of data: one hourly document per hour that has requests, whatever the range.
    assert 0 < answer.documents <= 26
    assert [tier for tier, _, _ in answer.segments] == [HOURLY]


def test_rollup_and_raw_parts_of_an_unaligned_range_add_up_exactly(day_of_spans) -> None:
    """What the query path does: rollups for the old part, raw spans for the edges and the newest part."""
    store, documents, now, _mark = day_of_spans
    start, end = now - 24 * HOUR_MS + 12_345, now
    plan = split_range(start, end, now_ms=now, threshold_minutes=60, window_ms=MINUTE_MS, interval_ms=15 * MINUTE_MS)
    assert plan.rollup is not None and plan.rollup[1] <= now - 60 * MINUTE_MS
    merged: dict = {}
    parts = rollup_aggregates(store, service="search", environment=None, endpoint=None, start_ms=plan.rollup[0],
                              end_ms=plan.rollup[1], interval_ms=15 * MINUTE_MS, group_by=None)
    for key, aggregate in parts.items():
        merged.setdefault(key, Aggregate()).merge(aggregate)
    for raw_start, raw_end in plan.raw:
        for key, (requests, errors, histogram) in raw_aggregates(store, raw_start, raw_end, 15 * MINUTE_MS, None,
                                                                  "search").items():
            merged.setdefault(key, Aggregate()).merge(Aggregate(requests, errors, histogram=histogram))
    expected = truth(documents, start, end, 15 * MINUTE_MS, None, _keep("search"))
    assert {k: (a.requests, a.errors) for k, a in merged.items()} == {k: tuple(v[:2]) for k, v in expected.items()}


def test_running_a_window_twice_changes_nothing(namespace: Settings, store: SearchStore) -> None:
    now = now_ms()
    window = floor_to(now, MINUTE_MS) - 5 * MINUTE_MS
    store_spans(store, generate(300, window, window + MINUTE_MS), now)
    assert job.roll_window(store, window) > 0
    first = _metrics(store)
    assert job.roll_window(store, window) == len(first)
    assert _metrics(store) == first
    # A backfill over it rewrites the same window documents (and adds the hour's, if the hour closed).
    job.backfill(store, window - 10 * MINUTE_MS, window + 2 * MINUTE_MS)
    after_backfill = _metrics(store)
    assert {doc_id: d for doc_id, d in after_backfill.items() if d["tier"] == "1m"} == first
    job.backfill(store, window - 10 * MINUTE_MS, window + 2 * MINUTE_MS)
    assert _metrics(store) == after_backfill


def test_a_late_span_is_counted_after_the_next_run(namespace: Settings, store: SearchStore) -> None:
    # Spans stored 5.5 minutes into the previous hour; the late one belongs 3 minutes before that hour, in a
    # closed hour: both its window document and the hourly document must take it in.
    hour = floor_to(now_ms(), HOUR_MS) - HOUR_MS
    stored = hour + 5 * MINUTE_MS + 40_000
    store_spans(store, generate(200, hour - 20 * MINUTE_MS, hour + 4 * MINUTE_MS), stored)
    job.roll_due(store, settled(store, stored))
    late_minute = hour - 3 * MINUTE_MS
    before = _window_requests(store, late_minute, "1m"), _window_requests(store, hour - HOUR_MS, HOURLY)
    assert before[0] > 0

    late = span_message(99_999_999, service="checkout", environment="production", endpoint="POST /orders",
                        start_ms=late_minute + 30_000, duration_ms=12_345.0, error=True)
    late_stored = stored + MINUTE_MS
    store_spans(store, [late], late_stored)
    job.roll_due(store, settled(store, late_stored) - 2000)  # not settled yet: not taken in
    assert (_window_requests(store, late_minute, "1m"), _window_requests(store, hour - HOUR_MS, HOURLY)) == before

    result = job.roll_due(store, settled(store, late_stored))
    assert result.windows == [late_minute] and result.late_windows == 1
    assert result.max_lateness_ms == late_stored - (late_minute + MINUTE_MS)
    assert _window_requests(store, late_minute, "1m") == before[0] + 1
    assert _window_requests(store, hour - HOUR_MS, HOURLY) == before[1] + 1
    hourly = rollup_aggregates(store, service="checkout", environment="production", endpoint="POST /orders",
                               start_ms=hour - HOUR_MS, end_ms=hour, interval_ms=None, group_by=None)
    assert hourly[None].duration_max == 12_345.0


def _window_requests(store: SearchStore, window: int, tier: str) -> int:
    """Requests of checkout/production/POST /orders in one window of one tier."""
    store.refresh(metrics_pattern(store.settings))
    answer = store.search(metrics_pattern(store.settings), {"size": 10, "query": {"bool": {"filter": [
        {"term": {"tier": tier}}, {"term": {"endpoint": "POST /orders"}}, {"term": {"service_name": "checkout"}},
        {"term": {"environment": "production"}}, {"range": {"@timestamp": {"gte": window, "lte": window}}}]}}})
    hits = answer["hits"]["hits"]
    assert len(hits) <= 1
    return hits[0]["_source"]["requests"] if hits else 0


def test_a_catch_up_longer_than_one_run_resumes_exactly_where_it_stopped(namespace: Settings,
                                                                          store: SearchStore) -> None:
    """Beat down for three hours while spans were stored: the runs after it split the catch-up and together
    roll every window that received spans, once each, with no window answered as zero."""
    store = open_store(namespace.replace(rollup_max_windows_per_run=25))
    now = now_ms()
    job.roll_due(store, now)  # beat ran (nothing stored yet): the mark is now
    assert job.get_mark(store) is not None
    documents = []
    for hour in range(3):  # stored over the three hours beat was down, each hour with its own times
        stored = now + hour * HOUR_MS + 30 * MINUTE_MS
        documents += store_spans(store, generate(300, now - 6 * HOUR_MS + hour * HOUR_MS, stored,
                                                 seed=hour, first_id=hour * 1000), stored)
    later = settled(store, now + 3 * HOUR_MS)
    runs = _roll_until_current(store, later)
    rolled = [w for r in runs for w in r.windows]
    assert len(runs) > 2 and all(r.pending for r in runs[:-1]) and not runs[-1].pending
    assert len(rolled) == len(set(rolled)), "a window was rolled twice in one catch-up"
    with_requests = {d["_at_ms"] - d["_at_ms"] % MINUTE_MS for d in documents if d["is_request"]}
    assert set(rolled) == with_requests
    for minute in sorted(with_requests):
        expected = truth(documents, minute, minute + MINUTE_MS, None, "service")
        assert _service_requests(store, minute) == {group: v[0] for group, v in expected.items()}, minute


def _service_requests(store: SearchStore, minute: int) -> dict[str, int]:
    answer = rollup_aggregates(store, service=None, environment=None, endpoint=None, start_ms=minute,
                               end_ms=minute + MINUTE_MS, interval_ms=None, group_by="service")
    return {group: aggregate.requests for group, aggregate in answer.items()}


def test_the_mark_never_moves_backwards_and_two_writers_cannot_undo_each_other(namespace: Settings,
                                                                                store: SearchStore) -> None:
    now = now_ms()
    store_spans(store, generate(50, now - 10 * MINUTE_MS, now - MINUTE_MS), now)
    later = job.roll_due(store, settled(store, now) + HOUR_MS).mark_ms
    assert later is not None
    assert job.roll_due(store, settled(store, now)).mark_ms == later  # an older clock: nothing to do
    assert job.get_mark(store) == later
    index = store.name("panopticon-state")
    source, version = store.get_versioned(index, job.PROGRESS_ID)
    assert source is not None and version is not None
    job.roll_due(store, settled(store, now) + 2 * HOUR_MS)  # someone else saves progress meanwhile
    assert not store.put_if(index, job.PROGRESS_ID, {**source, "mark_ms": 0}, version)
    assert job.get_mark(store) == later + HOUR_MS


def test_backfill_command_rerolls_a_range_and_is_safe_to_repeat(namespace: Settings, store: SearchStore) -> None:
    now = now_ms()
    store_spans(store, generate(400, now - 40 * MINUTE_MS, now - 2 * MINUTE_MS), now)
    runner = create_app(namespace).test_cli_runner()
    outputs = []
    for _ in range(2):
        result = runner.invoke(args=["rollup", "backfill", "--from", "45m", "--to", "now"])
        assert result.exit_code == 0, result.output
        outputs.append(_metrics(store))
    assert outputs[0] and outputs[0] == outputs[1]
    bad = runner.invoke(args=["rollup", "backfill", "--from", "yesterday-ish"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


def test_beat_and_worker_roll_up_on_their_own(namespace: Settings, store: SearchStore, processes) -> None:
    settings = namespace.replace(rollup_interval_seconds=2, bulk_task_timeout_seconds=4, search_timeout_seconds=2,
                                 rollup_settle_seconds=7)
    now = now_ms()
    store_spans(store, generate(300, now - 20 * MINUTE_MS, now - MINUTE_MS), now)
    processes.start("rollup", settings)  # the scheduled work has its own queue and worker
    beat = processes.start("beat", settings)
    pattern = metrics_pattern(settings)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (job.get_mark(store) or 0) <= now:
        time.sleep(1)
    store.refresh(pattern)
    assert (job.get_mark(store) or 0) > now, beat.log_tail()
    assert store.count(pattern, {"term": {"tier": "1m"}}) > 0


@pytest.mark.parametrize("interval", [MINUTE_MS, 15 * MINUTE_MS, HOUR_MS, None])
@pytest.mark.parametrize("group_by", ["endpoint", "service", None])
def test_rollups_equal_the_query_apis_raw_path(day_of_spans, interval, group_by) -> None:
    """Same keys, counts and histograms as `panopticon.query.raw.raw_aggregates` over the same range."""
    from panopticon.query.raw import raw_aggregates as query_raw

    store, _, now, _mark = day_of_spans
    end = floor_to(now, HOUR_MS) - HOUR_MS + 7 * MINUTE_MS
    service = None if group_by == "service" else "checkout"
    args = dict(service=service, environment=None, endpoint=None, start_ms=end - 6 * HOUR_MS, end_ms=end,
                interval_ms=interval, group_by=group_by)
    rolled = rollup_aggregates(store, **args)
    raw = query_raw(store, **args, deadline=Deadline(30))
    assert rolled.keys() == raw.keys()
    for key, aggregate in rolled.items():
        other = raw[key]
        assert (aggregate.requests, aggregate.errors, aggregate.histogram) == \
            (other.requests, other.errors, other.histogram), key
        assert aggregate.percentiles() == other.percentiles()


@pytest.mark.parametrize("interval", ["1m", "15m", "1h"])
def test_metrics_route_reads_rollups_and_agrees_with_raw_only(day_of_spans, interval) -> None:
    store, documents, now, _mark = day_of_spans
    start = floor_to(now - 20 * HOUR_MS, HOUR_MS) + 7 * MINUTE_MS  # unaligned to the hour on purpose
    path = f"/query/services/checkout/metrics?start={start}&end={now}&interval={interval}"
    with_rollups = _get(store.settings.replace(redis_host=None), path)
    raw_only = _get(store.settings.replace(redis_host=None, rollup_enabled=False), path)
    assert with_rollups["sources"]["rollup"] is not None and with_rollups["sources"]["rollup"]["documents"] > 0
    assert raw_only["sources"]["rollup"] is None
    # Exact, except sums of float durations, whose last digits depend on the order of addition.
    assert _rounded(with_rollups["buckets"]) == _rounded(raw_only["buckets"])
    assert _rounded([with_rollups["summary"]]) == _rounded([raw_only["summary"]])
    first = with_rollups["buckets"][0]["time_ms"]
    end = with_rollups["buckets"][-1]["time_ms"] + with_rollups["interval_ms"]  # the range, widened to whole buckets
    requests = [d for d in documents if d["service_name"] == "checkout" and first <= d["_at_ms"] < end]
    assert with_rollups["summary"]["requests"] == len([d for d in requests if d["is_request"]])


def test_services_overview_over_a_day_reads_hourly_rollups(day_of_spans) -> None:
    store, _documents, now, _mark = day_of_spans
    path = f"/query/services?start={now - 24 * HOUR_MS}&end={now}"
    answer = _get(store.settings.replace(redis_host=None), path)
    raw_only = _get(store.settings.replace(redis_host=None, rollup_enabled=False), path)
    assert "1h" in answer["sources"]["rollup"]["tiers"]
    assert _rounded(answer["items"]) == _rounded(raw_only["items"]) and answer["items"]
    # One row per service and environment: rollups and raw spans agree on that split too.
    split = _get(store.settings.replace(redis_host=None), f"{path}&by_environment=true")
    split_raw = _get(store.settings.replace(redis_host=None, rollup_enabled=False), f"{path}&by_environment=true")
    assert split["sources"]["rollup"] is not None
    assert _rounded(split["items"]) == _rounded(split_raw["items"]) and split["items"]
    assert all("environment" in row for row in split["items"])


def _get(settings: Settings, path: str) -> dict:
    response = create_app(settings).test_client().get(path)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _rounded(rows: list[dict]) -> list[dict]:
    """avg_ms as pytest.approx, so == compares it within 1e-9 relative and everything else exactly."""
    return [{k: pytest.approx(v, rel=1e-9) if k == "avg_ms" and v is not None else v for k, v in row.items()}
            for row in rows]
