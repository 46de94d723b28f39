"""Scenarios 10 and 11: rollups under faults.

10. Two beat schedulers at once, and after beat was down for 10 minutes: `metrics-apm` must equal a
clean run (one catch-up in this process, from nothing, over the same spans), document by document
except `updated_at`. Spans are produced with times spread over the last ~25 minutes, so the minutes
beat "missed" hold real data without the test waiting for them.

11. The workers stopped while traffic flows (compressed: 15 minutes of traffic, by its timestamps,
produced while no worker runs, beat running all along), then started: once the backlog is stored and
has settled, the metrics of those minutes, answered from rollups, equal the raw counts exactly.
"""

from __future__ import annotations

import time
from typing import Any

from panopticon.api.app import create_app
from panopticon.model.times import now_ms
from panopticon.rollup import documents as docs
from panopticon.rollup import job
from panopticon.rollup.windows import MINUTE_MS, floor_to
from panopticon.settings import Settings
from panopticon.storage import STATE, TRACES, SearchStore, open_store
from tests.faults.harness import FaultRun, Report, ensure_pipeline_topics
from tests.integration.processes import ProcessGroup
from tests.integration.traffic import make_messages

SPREAD_MIN = 25
DOWN_MIN = 10
# Short enough to settle within the test, long enough for the worker's limits it must exceed.
FAST = dict(bulk_task_timeout_seconds=4, search_timeout_seconds=2, rollup_settle_seconds=7)


def metrics_documents(store: SearchStore) -> dict[str, dict[str, Any]]:
    """Every rollup document by id, without its write time."""
    pattern = docs.metrics_pattern(store.settings)
    store.refresh(pattern)
    out: dict[str, dict[str, Any]] = {}
    answer = store.search(pattern, {"size": 10_000, "query": {"match_all": {}}, "sort": [{"key": "asc"}]})
    for hit in answer["hits"]["hits"]:
        out[hit["_id"]] = {k: v for k, v in hit["_source"].items() if k != "updated_at"}
    return out


def last_stored_ms(store: SearchStore) -> int:
    store.refresh(store.name(TRACES))
    answer = store.search(store.name(TRACES), {"size": 0, "aggs": {"last": {"max": {"field": "ingested_at"}}}})
    return int(answer["aggregations"]["last"]["value"])


def wait_caught_up(store: SearchStore, timeout: float = 240.0) -> float:
    """Wait until beat's runs moved the mark past every span stored; the moment they did."""
    last = last_stored_ms(store)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (job.get_mark(store) or 0) > last:
            return time.monotonic()
        time.sleep(1)
    raise AssertionError(f"the rollup mark {job.get_mark(store)} did not pass {last} in {timeout}s")


def clean_run(store: SearchStore, now: int) -> dict[str, dict[str, Any]]:
    """Forget every rollup and the progress, roll everything once in this process, read it back."""
    store.transport.request("DELETE", f"/{docs.metrics_pattern(store.settings)}",
                            params={"expand_wildcards": "all", "ignore_unavailable": "true"})
    store.transport.request("DELETE", f"/{store.name(STATE)}/_doc/{job.PROGRESS_ID}",
                            params={"refresh": "true"})
    for _ in range(100):
        if not job.roll_due(store, now=now).pending:
            break
    return metrics_documents(store)


def compare(got: dict[str, dict], want: dict[str, dict]) -> list[str]:
    problems = [f"missing {k} ({want[k]['tier']} {want[k]['@timestamp']})" for k in want.keys() - got.keys()]
    problems += [f"extra {k} ({got[k]['tier']} {got[k]['@timestamp']})" for k in got.keys() - want.keys()]
    problems += [f"differs {k}: {got[k]} != {want[k]}" for k in got.keys() & want.keys() if got[k] != want[k]]
    return problems


def test_two_beats_and_beat_down_10_minutes_equal_a_clean_run(namespace: Settings, store: SearchStore,
                                                              processes: ProcessGroup, report: Report) -> None:
    settings = namespace.replace(rollup_interval_seconds=5, bulk_batch_size=1000, **FAST)
    store = open_store(settings)
    run = FaultRun("10. rollups: 2 beats, beat down 10 min", settings, store, processes, report)
    start = now_ms() - (SPREAD_MIN + 2) * MINUTE_MS
    count = 8_000
    run.messages, run.produced = _spread_messages(settings, count, start, SPREAD_MIN * MINUTE_MS // count)
    run.start("worker")
    run.start("rollup")
    run.start("bridge")
    run.produce()
    assert run.wait_stored(180), "ingest did not finish"

    # Two schedulers at once, both sending rollup_due every 5 s to the same workers.
    first, second = run.start("beat"), run.start("beat")
    wait_caught_up(store)
    time.sleep(6)  # let the last runs of both beats land
    two_beats = metrics_documents(store)
    for beat in (first, second):
        processes.kill(beat)

    # Beat "was down" for the last 10 minutes: the mark stands 10 minutes back and the documents of the
    # windows stored since do not exist; one beat comes back and catches up.
    down_since = floor_to(now_ms() - DOWN_MIN * MINUTE_MS, MINUTE_MS)
    job.set_mark(store, down_since)
    store.transport.request("POST", f"/{docs.metrics_pattern(settings)}/_delete_by_query",
                            params={"refresh": "true", "conflicts": "proceed"},
                            body={"query": {"range": {"@timestamp": {"gte": down_since - 30 * MINUTE_MS,
                                                                     "format": "epoch_millis"}}}})
    with run.fault():
        pass  # recovery counts from the moment beat is back
    run.start("beat")
    caught_up = wait_caught_up(store)
    time.sleep(6)
    after_outage = metrics_documents(store)
    reference_at = now_ms()
    clean = clean_run(store, reference_at)

    assert clean, "the clean run wrote nothing"
    assert not compare(two_beats, clean)[:5], compare(two_beats, clean)[:5]
    assert not compare(after_outage, clean)[:5], compare(after_outage, clean)[:5]
    run.note(f"{len(clean)} metrics-apm documents identical to a clean run after 2 beats and after "
             f"beat down {DOWN_MIN} min (caught up {caught_up - run.fault_ended:.1f}s after beat restart)")
    run.finish(timeout=60, recovered_at=caught_up)


def _spread_messages(settings: Settings, count: int, start: int, step: int, first: int = 0):
    ensure_pipeline_topics(settings)
    return make_messages(settings.index_prefix, count, bad_ratio=0.0, start_ms=start, step_ms=step,
                         endpoints=5, error_ratio=0.05, first=first)


def test_workers_stopped_while_traffic_flows_then_metrics_equal_raw(namespace: Settings, store: SearchStore,
                                                                    processes: ProcessGroup, report: Report) -> None:
    settings = namespace.replace(rollup_interval_seconds=3, rollup_threshold_minutes=1, redis_host=None,
                                 bulk_batch_size=1000, **FAST)
    store = open_store(settings)
    run = FaultRun("11. workers down 15 min (compressed)", settings, store, processes, report)
    start = floor_to(now_ms() - 17 * MINUTE_MS, MINUTE_MS)
    # Before the outage: the first 5 minutes of traffic, stored and rolled up.
    before, run.produced = _spread_messages(settings, 3_000, start, 5 * MINUTE_MS // 3_000)
    run.messages = before
    worker = run.start("worker")
    run.start("rollup")
    run.start("bridge")
    run.start("beat")
    run.produce()
    assert run.wait_stored(120), "the first part was not stored"
    wait_caught_up(store)
    mark_before = job.get_mark(store)
    # The workers stop; 15 minutes of traffic (by its timestamps, over the same minutes and after) arrive.
    with run.fault():
        processes.kill(worker)
        step = 15 * MINUTE_MS // 6_000
        during, produced = _spread_messages(settings, 6_000, start, step, first=3_000)
        run.messages = during
        run.produce()
        run.producer.join(120)
        run.produced.add(produced)
        time.sleep(settings.rollup_settle_seconds + settings.rollup_interval_seconds * 3)
    # Beat and the rollup worker ran on their own queue all along: the mark moved while nothing was stored.
    assert (job.get_mark(store) or 0) > (mark_before or 0)
    run.messages = before + during
    run.start("worker")
    assert run.wait_stored(240), "the backlog was not stored"
    caught_up = wait_caught_up(store)

    end = start + 15 * MINUTE_MS
    path = f"/query/services/{settings.index_prefix}-svc/metrics?start={start}&end={end}&interval=1m"
    with_rollups = create_app(settings).test_client().get(path).get_json()
    raw_only = create_app(settings.replace(rollup_enabled=False)).test_client().get(path).get_json()
    sources = with_rollups["sources"]
    assert sources["rollup"] is not None and sources["rollup"]["documents"] > 0, sources
    assert sources["late_spans"] == 0 and sources["rollup"]["windows_read_raw"] == 0, sources
    rollup_counts = [(b["time"], b["requests"], b["errors"]) for b in with_rollups["buckets"]]
    raw_counts = [(b["time"], b["requests"], b["errors"]) for b in raw_only["buckets"]]
    assert rollup_counts == raw_counts
    assert sum(requests for _, requests, _ in rollup_counts) == len(run.produced.span_ids)
    run.note(f"{len(rollup_counts)} one-minute buckets from rollups equal to raw spans "
             f"({sum(r for _, r, _ in rollup_counts)} requests, 5 minutes of them rolled before the outage "
             f"and rolled again with the late spans)")
    run.finish(timeout=60, recovered_at=caught_up)
