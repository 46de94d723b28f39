"""The ingest spine end to end: Kafka -> bridge -> Celery bulk_index -> data streams, id by id."""

from __future__ import annotations

import signal
import time

import psutil
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from panopticon.kafka import common_config, ensure_topics
from panopticon.settings import Settings
from panopticon.storage import SearchStore
from tests.integration.traffic import check_exact, make_messages, produce, read_topic, wait_for_count

CLEAN = {"produced_valid": None, "lost": 0, "duplicated": 0, "unexpected": 0}


def _assert_exact(store: SearchStore, produced) -> None:
    result = check_exact(store, produced)
    assert {k: result[k] for k in ("lost", "duplicated", "unexpected")} == {"lost": 0, "duplicated": 0,
                                                                          "unexpected": 0}, result
    assert result["stored"] == produced.valid


def _topics(settings: Settings) -> None:
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                             settings.kafka_apm_log_error_topic, settings.kafka_apm_dlq_topic])


def test_20000_mixed_messages_exactly_once(namespace: Settings, store: SearchStore, processes) -> None:
    _topics(namespace)
    messages, produced = make_messages(namespace.index_prefix, 20_000, bad_ratio=0.01)
    produce(namespace, messages)
    processes.start("worker", namespace)
    bridge = processes.start("bridge", namespace)
    assert wait_for_count(store, produced.valid) == produced.valid, bridge.log_tail()
    _assert_exact(store, produced)

    letters = read_topic(namespace, namespace.kafka_apm_dlq_topic)
    assert len(letters) == produced.bad
    for letter in letters:
        headers = dict(letter.headers())
        assert headers["panopticon.error.reason"], "every dead letter says why"
        assert headers["panopticon.source.topic"].decode() in (namespace.kafka_apm_log_topic,
                                                                namespace.kafka_apm_span_topic)
    errors = read_topic(namespace, namespace.kafka_apm_log_error_topic)
    assert {m.key().decode() for m in errors} == produced.error_log_ids


def test_replay_from_earliest_creates_nothing(namespace: Settings, store: SearchStore, processes) -> None:
    _topics(namespace)
    messages, produced = make_messages(namespace.index_prefix, 4_000, bad_ratio=0.0)
    produce(namespace, messages)
    processes.start("worker", namespace)
    bridge = processes.start("bridge", namespace)
    assert wait_for_count(store, produced.valid) == produced.valid
    time.sleep(3)  # let the bridge commit
    processes.kill(bridge, signal.SIGTERM)
    assert bridge.process.returncode == 0, bridge.log_tail()

    admin = AdminClient(common_config(namespace))
    partitions = [TopicPartition(t, p, 0) for t in (namespace.kafka_apm_log_topic, namespace.kafka_apm_span_topic)
                  for p in range(namespace.kafka_topic_partitions)]
    future = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(namespace.kafka_consumer_group, partitions)])
    for f in future.values():
        f.result(30)
    replay = processes.start("bridge", namespace)
    processes.wait_for_log(replay, "batches done", timeout=60)
    time.sleep(8)
    _assert_exact(store, produced)


def test_kill_9_worker_and_bridge_mid_run(namespace: Settings, store: SearchStore, processes) -> None:
    # The killed worker's prefetched batches wait unacknowledged in Redis; the bridge hands them off again
    # after BULK_QUEUE_TIMEOUT_SECONDS (the broker would redeliver them only after its visibility timeout).
    settings = namespace.replace(bulk_task_timeout_seconds=15, bulk_queue_timeout_seconds=20, bulk_batch_size=500)
    _topics(settings)
    messages, produced = make_messages(settings.index_prefix, 16_000, bad_ratio=0.0)
    worker = processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    produce(settings, messages[:8_000], rate=4_000)
    children = processes.children(worker)
    processes.kill(worker)  # the main process, -9, then its pool children: the whole worker is gone
    for child in children:
        child.kill()
    processes.start("worker", settings)
    produce(settings, messages[8_000:12_000], rate=4_000)
    processes.kill(bridge)
    processes.start("bridge", settings)
    produce(settings, messages[12_000:])
    assert wait_for_count(store, produced.valid, timeout=240) == produced.valid
    time.sleep(5)  # late duplicates, if any, would land now
    _assert_exact(store, produced)


def test_paused_bridge_stays_in_group_with_bounded_memory(namespace: Settings, store: SearchStore,
                                                          processes) -> None:
    settings = namespace.replace(bulk_max_parallel_flushes=1, bulk_batch_size=200,
                                 bulk_task_timeout_seconds=300)
    _topics(settings)
    messages, produced = make_messages(settings.index_prefix, 30_000, bad_ratio=0.0)
    worker = processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    processes.wait_for_log(bridge, "assigned", timeout=60)
    # A stalled worker: stop it (and its children) for longer than the consumer session timeout.
    stalled = [psutil.Process(worker.process.pid), *processes.children(worker)]
    for p in stalled:
        p.suspend()
    produce(settings, messages)
    rss = []
    for _ in range(40):
        rss.append(psutil.Process(bridge.process.pid).memory_info().rss)
        time.sleep(1)
    for p in stalled:
        p.resume()
    assert wait_for_count(store, produced.valid, timeout=240) == produced.valid
    log = bridge.log_path.read_text()
    assert "revoked" not in log and "lost" not in log, "the paused consumer must keep its partitions"
    assert max(rss) < 400 * 1024 * 1024, f"bridge memory grew to {max(rss) / 2**20:.0f} MiB"
    _assert_exact(store, produced)
