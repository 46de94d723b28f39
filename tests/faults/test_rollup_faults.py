"""Scenario 10: rollups with two beat schedulers at once, and after beat was down for 10 minutes,
must equal a clean run: one `roll_due` in this process, from nothing, over the same spans.

Spans are produced with times spread over the last ~25 minutes, so the minutes beat "missed" hold
real data without the test waiting for them. Documents are compared field by field, except
`updated_at` (when it was written).
"""

from __future__ import annotations

import time
from typing import Any

from panopticon.rollup import documents as docs
from panopticon.rollup import job
from panopticon.rollup.windows import MINUTE_MS, WindowPlan
from panopticon.settings import Settings
from panopticon.storage import STATE, SearchStore
from tests.faults.harness import FaultRun, Report, ensure_pipeline_topics
from tests.integration.processes import ProcessGroup
from tests.integration.traffic import make_messages

SPREAD_MIN = 25
DOWN_MIN = 10


def metrics_documents(store: SearchStore) -> dict[str, dict[str, Any]]:
    """Every rollup document by id, without its write time."""
    pattern = docs.metrics_pattern(store.settings)
    store.refresh(pattern)
    out: dict[str, dict[str, Any]] = {}
    answer = store.search(pattern, {"size": 10_000, "query": {"match_all": {}}, "sort": [{"key": "asc"}]})
    for hit in answer["hits"]["hits"]:
        out[hit["_id"]] = {k: v for k, v in hit["_source"].items() if k != "updated_at"}
    return out


def wait_caught_up(store: SearchStore, timeout: float = 240.0) -> float:
    """Wait until beat's runs moved the watermark to the newest closed window; the moment it did."""
    plan = WindowPlan.from_settings(store.settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watermark = job.get_watermark(store)
        if watermark is not None and watermark >= plan.last_closed_end(job.now_ms()):
            return time.monotonic()
        time.sleep(1)
    raise AssertionError(f"watermark {job.get_watermark(store)} did not catch up in {timeout}s")


def clean_run(store: SearchStore, now: int) -> dict[str, dict[str, Any]]:
    """Forget every rollup and the watermark, roll everything once in this process, read it back."""
    store.transport.request("DELETE", f"/{docs.metrics_pattern(store.settings)}",
                            params={"expand_wildcards": "all", "ignore_unavailable": "true"})
    store.transport.request("DELETE", f"/{store.name(STATE)}/_doc/{job.WATERMARK_ID}",
                            params={"refresh": "true"})
    plan = WindowPlan.from_settings(store.settings)
    while (job.get_watermark(store) or 0) < plan.last_closed_end(now):
        job.roll_due(store, now=now)
    return metrics_documents(store)


def compare(got: dict[str, dict], want: dict[str, dict]) -> list[str]:
    problems = [f"missing {k} ({want[k]['tier']} {want[k]['@timestamp']})" for k in want.keys() - got.keys()]
    problems += [f"extra {k} ({got[k]['tier']} {got[k]['@timestamp']})" for k in got.keys() - want.keys()]
    problems += [f"differs {k}: {got[k]} != {want[k]}" for k in got.keys() & want.keys() if got[k] != want[k]]
    return problems


def test_two_beats_and_beat_down_10_minutes_equal_a_clean_run(namespace: Settings, store: SearchStore,
                                                              processes: ProcessGroup, report: Report) -> None:
    settings = namespace.replace(rollup_interval_seconds=5, bulk_batch_size=1000)
    run = FaultRun("10. rollups: 2 beats, beat down 10 min", settings, store, processes, report)
    start = job.now_ms() - (SPREAD_MIN + 2) * MINUTE_MS
    count = 8_000
    run.messages, run.produced = _spread_messages(settings, count, start, SPREAD_MIN * MINUTE_MS // count)
    run.start("worker")
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

    # Beat "was down" for the last 10 minutes: the watermark stands 10 minutes back and those
    # minutes' documents do not exist; one beat comes back and catches up.
    plan = WindowPlan.from_settings(settings)
    down_since = plan.last_closed_end(job.now_ms()) - DOWN_MIN * MINUTE_MS
    job.set_watermark(store, down_since)
    store.transport.request("POST", f"/{docs.metrics_pattern(settings)}/_delete_by_query",
                            params={"refresh": "true", "conflicts": "proceed"},
                            body={"query": {"range": {"@timestamp": {"gte": down_since, "format": "epoch_millis"}}}})
    with run.fault():
        pass  # recovery counts from the moment beat is back
    run.start("beat")
    caught_up = wait_caught_up(store)
    time.sleep(6)
    after_outage = metrics_documents(store)
    reference_at = job.now_ms()
    clean = clean_run(store, reference_at)

    assert clean, "the clean run wrote nothing"
    assert not compare(two_beats, clean)[:5], compare(two_beats, clean)[:5]
    assert not compare(after_outage, clean)[:5], compare(after_outage, clean)[:5]
    run.note(f"{len(clean)} metrics-apm documents identical to a clean run after 2 beats and after "
             f"beat down {DOWN_MIN} min (caught up {caught_up - run.fault_ended:.1f}s after beat restart)")
    run.finish(timeout=60, recovered_at=caught_up)


def _spread_messages(settings: Settings, count: int, start: int, step: int):
    ensure_pipeline_topics(settings)
    return make_messages(settings.index_prefix, count, bad_ratio=0.0, start_ms=start, step_ms=step,
                         endpoints=5, error_ratio=0.05)
