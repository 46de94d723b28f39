"""Scenarios 12-15: no batch can stall ingest, nothing is stored twice.

12. Poison in the batches: 10,000 good messages mixed with a 3 MB and a 1.5 MB message (the topic takes
    10 MB, as operators configure them) and one document the engine refuses together with its whole bulk
    request. Every good one stored, each bad one in the dead-letter topic with its reason (cut to fit),
    ingest never stops.
13. A data-stream rollover between two deliveries of the same batches (the bridge killed before it
    committed, the new one replays everything): 0 duplicates for spans and logs.
14. Commit errors: a bridge frozen past its session time-out while another takes its partitions; when it
    wakes its commits are refused (the group moved on). It keeps running; 0 lost, 0 duplicated.
15. A slow engine: every bulk request answered 30 s late for 5 minutes. The queue stays bounded, no batch
    runs twice because of the wait, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import signal
import threading
import time

import redis
from confluent_kafka import Producer

from panopticon.kafka import ensure_topics, producer_config
from panopticon.settings import Settings
from panopticon.storage import SearchStore
from tests.faults.harness import FaultRun, Report, dead_letter_sources, ensure_pipeline_topics
from tests.faults.proxy import BulkRejectingProxy
from tests.integration.processes import ProcessGroup
from tests.integration.traffic import read_topic

TEN_MB = 10 * 1024 * 1024


def _produce_large(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = Producer({**producer_config(settings), "message.max.bytes": TEN_MB + 65_536})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(60) == 0


def test_poison_messages_and_a_refused_bulk_never_stall_ingest(namespace: Settings, store: SearchStore,
                                                               processes: ProcessGroup, report: Report) -> None:
    settings = namespace.replace(bulk_batch_size=1000, bulk_task_timeout_seconds=20, bulk_queue_timeout_seconds=60)
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic],
                  config={"max.message.bytes": str(TEN_MB)})
    ensure_pipeline_topics(settings)
    marker = f"{settings.index_prefix}refused-whole"
    with BulkRejectingProxy(settings.elasticsearch_node, refuse_marker=marker.encode()) as proxy:
        run = FaultRun("12. 3 MB + 1.5 MB messages, a refused bulk", settings, store, processes, report)
        run.prepare(10_000)
        poison = [b'{"level":"ERROR","message":"' + b"x" * (3 * 1024 * 1024) + b'"}',
                  b'{"level":"ERROR","message":"' + b"y" * (1536 * 1024) + b'"}',
                  b'{"event_id":"%s","timestamp":%d,"service_name":"%s-svc","level":"INFO","message":"ok"}'
                  % (marker.encode(), int(time.time() * 1000), settings.index_prefix.encode())]
        half = len(run.messages) // 2
        good_first, good_rest = run.messages[:half], run.messages[half:]
        run.produced.bad += len(poison)
        run.start("worker", settings.replace(elasticsearch_node=proxy.url))
        run.start("bridge")
        with run.fault():
            run.messages = good_first
            run.produce()
            run.producer.join(60)
            _produce_large(settings, settings.kafka_apm_log_topic, poison)
            run.messages = good_rest
            run.produce()
            run.producer.join(60)
        run.messages = good_first + [("log", value) for value in poison] + good_rest
        _wait_for_dead_letters(settings, len(poison), timeout=240)  # the refused one needs a few bisections
        row = run.finish(timeout=300)
        assert proxy.refused_requests >= 3, proxy.refused_requests
    # Dead letters are at-least-once (a re-sent batch dead-letters its rejects again): one reason per source.
    letters = {(h["panopticon.source.partition"], h["panopticon.source.offset"]): h for h in _dead_letters(settings)}
    reasons = [headers["panopticon.error.reason"] for headers in letters.values()]
    assert len(letters) == 3 and sum("too large" in r for r in reasons) == 2, reasons
    assert any("gave up" in r and "EngineRejected" in r for r in reasons), reasons
    truncated = [headers for headers in letters.values() if "panopticon.payload.truncated" in headers]
    assert len(truncated) == 2, "both large payloads were cut to fit the dead-letter topic"
    row.notes = (f"3 dead letters: 2 'message too large' cut to fit (size and sha256 in headers), 1 'gave up "
                 f"after repeated failures ... EngineRejected'; {proxy.refused_requests} bulk requests refused "
                 "whole until the document stood alone")
    report.amend(row)


def _wait_for_dead_letters(settings: Settings, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(dead_letter_sources(settings)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} dead letters after {timeout}s"
        time.sleep(2)


def _dead_letters(settings: Settings) -> list[dict[str, str]]:
    """The headers of every dead letter (checked: a cut payload says how long it was and its hash)."""
    out = []
    for letter in read_topic(settings, settings.kafka_apm_dlq_topic, timeout=30):
        headers = {k: v.decode() for k, v in letter.headers() or []}
        if "panopticon.payload.truncated" in headers:
            assert int(headers["panopticon.payload.size"]) > len(letter.value())
            assert len(headers["panopticon.payload.sha256"]) == 64
        out.append(headers)
    return out


def test_a_rollover_between_two_deliveries_stores_nothing_twice(namespace: Settings, store: SearchStore,
                                                                processes: ProcessGroup, report: Report) -> None:
    # Commits so rare that nothing is committed before the kill: the new bridge replays every message.
    settings = namespace.replace(kafka_session_timeout_ms=6000)  # the killed member leaves the group sooner
    never = settings.replace(bridge_commit_interval_seconds=3600, bulk_batch_size=500)
    run = FaultRun("13. rollover between two deliveries", settings, store, processes, report)
    run.prepare(6_000)
    run.start("worker")
    first = run.start("bridge", never)
    run.produce()
    run.producer.join(60)
    assert run.wait_stored(120), "the first delivery was not stored"
    with run.fault():
        for stream in ("traces-apm", "logs-apm"):
            answer = store.transport.request("POST", f"/{store.name(stream)}/_rollover")
            assert answer["rolled_over"], answer
        processes.kill(first)  # kill -9: nothing committed but the hand-off reservations
        second = run.start("bridge")
    deadline = time.monotonic() + 180
    while (replayed := sum(int(n) for n in _worker_duplicates(processes))) < run.produced.valid:
        assert time.monotonic() < deadline, f"the second bridge replayed {replayed} of {run.produced.valid}"
        time.sleep(1)
    row = run.finish(timeout=180)  # asserts: 0 lost, 0 duplicated
    assert second.alive()
    row.notes = f"{replayed} replayed documents found in the previous backing index and not written again"
    report.amend(row)


def _worker_duplicates(processes: ProcessGroup) -> list[str]:
    import re

    out = []
    for running in processes.running:
        if running.name == "worker":
            out += re.findall(r"'duplicates': (\d+)", running.log_path.read_text(errors="replace"))
    return out


def test_commits_refused_after_a_session_time_out_do_not_stop_the_bridge(
        namespace: Settings, store: SearchStore, processes: ProcessGroup, report: Report) -> None:
    settings = namespace.replace(kafka_session_timeout_ms=6000, bulk_batch_size=500)
    run = FaultRun("14. commits refused (session time-out)", settings, store, processes, report)
    run.prepare(12_000)
    run.start("worker")
    frozen = run.start("bridge")
    processes.wait_for_log(frozen, "assigned", timeout=60)
    other = run.start("bridge")
    run.produce(rate=400)
    time.sleep(8)
    with run.fault():
        processes.kill(frozen, signal.SIGSTOP)
        time.sleep(15)  # past the session time-out: the group gives everything to the other bridge
        processes.kill(frozen, signal.SIGCONT)
        time.sleep(10)
    row = run.finish(timeout=240)
    assert frozen.alive() and other.alive(), frozen.log_tail()
    log = frozen.log_path.read_text(errors="replace")
    refused = log.count("commit failed, left to the next one") + log.count("reservation not committed")
    row.notes = f"{refused} commits refused to the frozen bridge after it woke; both bridges kept running"
    report.amend(row)


def test_a_slow_engine_for_5_minutes_runs_no_batch_twice(namespace: Settings, store: SearchStore,
                                                          processes: ProcessGroup, report: Report) -> None:
    settings = namespace.replace(bulk_batch_size=1000)  # the default task (120 s) and queue (300 s) time-outs
    with BulkRejectingProxy(settings.elasticsearch_node, bulk_delay_s=30.0) as proxy:
        run = FaultRun("15. engine answers bulk 30 s late, 5 min", settings, store, processes, report)
        run.prepare(10_000)
        run.start("worker", settings.replace(elasticsearch_node=proxy.url))
        bridge = run.start("bridge")
        queue = _QueueWatch(settings)
        with run.fault():
            run.produce(rate=40)
            time.sleep(300)
            proxy.bulk_delay_s = 0.0
        queue.stop()
        row = run.finish(timeout=600)
    log = bridge.log_path.read_text(errors="replace")
    resent = log.count("not started within") + log.count("after a worker started it")
    duplicate_runs = log.count("a superseded copy of a batch ran anyway")
    assert resent == 0 and duplicate_runs == 0, (resent, duplicate_runs)
    assert queue.longest <= settings.bulk_max_parallel_flushes, queue.longest
    row.notes = (f"{proxy.delayed_requests} bulk requests delayed 30 s; Celery queue at most {queue.longest} "
                 f"tasks; {resent} batches handed off again, {duplicate_runs} duplicate executions")
    report.amend(row)


class _QueueWatch:
    """Samples the length of the Celery ingest queue in Redis every second."""

    def __init__(self, settings: Settings) -> None:
        self.client = redis.Redis.from_url(settings.broker_url)
        self.queue = settings.celery_queue
        self.longest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.longest = max(self.longest, int(self.client.llen(self.queue)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
