"""Rollups that follow the data: spans stored hours late through the real pipeline, and partial engine answers.

The numbers must be right at every moment: before the late spans are rolled up (their windows are read
from raw spans), and after (the windows are rolled again), equal to a raw-only answer either way.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from panopticon.api.app import create_app
from panopticon.exceptions import PartialAnswer
from panopticon.kafka import ensure_topics, producer_config
from panopticon.model.times import now_ms
from panopticon.rollup import job
from panopticon.rollup.windows import HOUR_MS, MINUTE_MS, floor_to
from panopticon.settings import Settings
from panopticon.storage import TRACES, SearchStore, open_store
from tests.integration.engine_proxy import PartialAnswerProxy
from tests.integration.rollup_data import generate, store_spans, truth
from tests.integration.test_rollup import _get, _rounded, settled

FAST = dict(bulk_task_timeout_seconds=4, search_timeout_seconds=2, rollup_settle_seconds=7, redis_host=None)


def _produce(settings: Settings, messages: list[bytes]) -> None:
    ensure_topics(settings, [settings.kafka_apm_span_topic, settings.kafka_apm_log_topic])
    producer = Producer(producer_config(settings))
    for value in messages:
        producer.produce(settings.kafka_apm_span_topic, value)
        producer.poll(0)
    assert producer.flush(60) == 0


def _wait_for_spans(store: SearchStore, expected: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store.refresh(store.name(TRACES))
        if store.count(store.name(TRACES)) >= expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"{store.count(store.name(TRACES))} of {expected} spans stored in {timeout}s")


@pytest.mark.parametrize("interval", ["1m", "1h"])
def test_spans_stored_two_hours_late_are_counted_before_and_after_the_next_runs(
        namespace: Settings, store: SearchStore, processes, interval: str) -> None:
    settings = namespace.replace(**FAST)
    store = open_store(settings)  # rolls with this test's short ROLLUP_SETTLE_SECONDS
    start = floor_to(now_ms() - 2 * HOUR_MS - 30 * MINUTE_MS, MINUTE_MS)
    end = start + 20 * MINUTE_MS
    on_time_stored = end + MINUTE_MS
    documents = store_spans(store, generate(600, start, end), on_time_stored)
    job.roll_due(store, settled(store, on_time_stored))  # the windows are rolled; the mark passes them
    rolled_at_first = job.get_mark(store)
    assert rolled_at_first is not None and rolled_at_first < now_ms()

    late = generate(300, start, end, seed=9, first_id=50_000)
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    processes.wait_for_log(bridge, "assigned", timeout=60)
    _produce(settings, late)
    _wait_for_spans(store, len(documents) + len(late))
    stored = _late_documents(store, start, end, rolled_at_first)
    all_documents = documents + stored
    late_checkout = sum(1 for d in stored if d["is_request"] and d["service_name"] == "checkout")
    assert late_checkout > 0

    path = f"/query/services/checkout/metrics?start={start}&end={end}&interval={interval}"
    raw_only = _get(settings.replace(rollup_enabled=False), path)
    before = _get(settings, path)
    assert before["sources"]["late_spans"] == late_checkout
    assert before["sources"]["rollup"] is None or before["sources"]["rollup"]["windows_read_raw"] > 0
    _same_numbers(before, raw_only, all_documents)

    time.sleep(settings.settle_seconds + 1)
    for _ in range(2):  # within two runs of settling
        job.roll_due(store)
    after = _get(settings, path)
    assert after["sources"]["late_spans"] == 0
    assert after["sources"]["rollup"] is not None and after["sources"]["rollup"]["documents"] > 0
    assert after["sources"]["rollup"]["windows_read_raw"] == 0
    assert after["sources"]["complete"] is True
    _same_numbers(after, raw_only, all_documents)


def _late_documents(store: SearchStore, start: int, end: int, mark: int) -> list[dict]:
    """The late spans as the worker stored them (with `_at_ms`, for the truth)."""
    answer = store.search(store.name(TRACES), {"size": 10_000, "query": {"bool": {"filter": [
        {"range": {"ingested_at": {"gte": mark, "format": "epoch_millis"}}},
        {"range": {"@timestamp": {"gte": start, "lt": end, "format": "epoch_millis"}}}]}}})
    from panopticon.model.times import iso_to_ms

    return [{**hit["_source"], "_at_ms": iso_to_ms(hit["_source"]["@timestamp"])} for hit in answer["hits"]["hits"]]


def _same_numbers(answer: dict, raw_only: dict, documents: list[dict]) -> None:
    """Equal to the raw-only answer in every bucket (counts and every percentile), and to the truth."""
    assert _rounded(answer["buckets"]) == _rounded(raw_only["buckets"])
    assert _rounded([answer["summary"]]) == _rounded([raw_only["summary"]])
    first = answer["buckets"][0]["time_ms"]
    last = answer["buckets"][-1]["time_ms"] + answer["interval_ms"]
    expected = truth(documents, first, last, None, None, lambda d: d["service_name"] == "checkout")
    assert answer["summary"]["requests"] == expected[None][0]
    assert answer["summary"]["errors"] == expected[None][1]


@pytest.mark.parametrize("mode", ["shard_failure", "timed_out"])
def test_a_partial_engine_answer_fails_the_roll_and_never_shows_a_smaller_number(
        namespace: Settings, store: SearchStore, mode: str) -> None:
    start = floor_to(now_ms() - 3 * HOUR_MS, HOUR_MS)
    documents = store_spans(store, generate(400, start, start + 30 * MINUTE_MS), start + 31 * MINUTE_MS)
    job.roll_due(store, settled(store, start + 31 * MINUTE_MS))
    progress = job.get_progress(store)
    late_stored = now_ms()
    documents += store_spans(store, generate(100, start, start + 30 * MINUTE_MS, seed=3, first_id=9000), late_stored)
    path = f"/query/services/checkout/metrics?start={start}&end={start + 30 * MINUTE_MS}&interval=1m"

    with PartialAnswerProxy(namespace.elasticsearch_node) as proxy:
        proxied = namespace.replace(elasticsearch_node=proxy.url, search_engine="opensearch", redis_host=None)
        through = open_store(proxied)
        client = create_app(proxied).test_client()
        for index_part in ("traces-apm", "metrics-apm"):
            proxy.make_partial(mode, index_part)
            rewritten = proxy.rewritten
            if index_part == "traces-apm":
                with pytest.raises(PartialAnswer):
                    job.roll_due(through, settled(store, late_stored))
                assert job.get_progress(store) == progress, "a failed roll moved a marker"
            response = client.get(path)
            assert response.status_code == 503, (index_part, response.get_json())
            assert int(response.headers["Retry-After"]) > 0
            assert proxy.rewritten > rewritten  # the answers really were partial
        proxy.make_partial(None)
        result = job.roll_due(through, settled(store, late_stored))
        assert result.windows and (job.get_mark(store) or 0) > (progress.mark_ms or 0)
        answer = client.get(path).get_json()
    expected = truth(documents, start, start + 30 * MINUTE_MS, None, None, lambda d: d["service_name"] == "checkout")
    assert answer["summary"]["requests"] == expected[None][0]


def test_the_rollup_gauges_show_the_last_run(namespace: Settings, store: SearchStore) -> None:
    from tests.integration.test_operations import metric_values

    start = floor_to(now_ms() - 2 * HOUR_MS, MINUTE_MS)
    store_spans(store, generate(50, start, start + 5 * MINUTE_MS), start + 6 * MINUTE_MS)
    job.roll_due(store, settled(store, start + 6 * MINUTE_MS))
    late_stored = now_ms()
    store_spans(open_store(namespace), generate(20, start, start + 5 * MINUTE_MS, seed=4, first_id=700), late_stored)
    result = job.roll_due(store, settled(store, late_stored))
    assert result.late_windows > 0
    text = create_app(namespace.replace(redis_host=None)).test_client().get("/metrics").data.decode()
    assert metric_values(text, "panopticon_rollup_late_windows")[""] == result.late_windows
    assert metric_values(text, "panopticon_rollup_max_lateness_seconds")[""] == result.max_lateness_ms / 1000
    assert metric_values(text, "panopticon_rollup_scan_pending")[""] == 0
