"""Scenarios 3, 4 and 5: a service the pipeline needs dies, restarts or freezes mid-run.

Each uses its own copy of that service (tests/faults/services.py), never the shared stack.
"""

from __future__ import annotations

import signal
import time

import psutil
import redis

from panopticon.settings import Settings
from panopticon.storage import SearchStore, open_store
from tests.faults.harness import FaultRun, Report, stored_total
from tests.faults.services import PrivateStack
from tests.integration.processes import ProcessGroup

OUTAGE_S = 120  # the "two minutes"


def _wait_progress(run: FaultRun, at_least: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while stored_total(run.store) < at_least:
        assert time.monotonic() < deadline, f"nothing stored after {timeout}s"
        time.sleep(0.3)


def test_redis_killed_and_restarted_empty(namespace: Settings, store: SearchStore, processes: ProcessGroup,
                                          report: Report, private_stack: PrivateStack) -> None:
    private_stack.up("redis")
    settings = private_stack.settings(namespace.replace(bulk_batch_size=500, bulk_task_timeout_seconds=20), "redis")
    run = FaultRun("3. Redis kill -9, restarted empty", settings, store, processes, report)
    run.prepare(12_000)
    run.start("worker")
    bridge = run.start("bridge")
    run.produce(rate=1_500)
    with run.fault():
        _wait_progress(run, 2_000)
        private_stack.kill("redis")  # the broker's queue and every result are gone with it
        time.sleep(5)
        private_stack.up("redis")  # --save '' --appendonly no: it comes back empty
    run.finish(timeout=300)
    assert bridge.alive(), bridge.log_tail()


def test_kafka_broker_restarted(namespace: Settings, store: SearchStore, processes: ProcessGroup,
                                report: Report, private_stack: PrivateStack) -> None:
    private_stack.up("kafka")
    settings = private_stack.settings(namespace.replace(bulk_batch_size=500), "kafka")
    run = FaultRun("4. Kafka broker restarted", settings, store, processes, report)
    run.prepare(12_000)
    run.start("worker")
    bridge = run.start("bridge")
    processes.wait_for_log(bridge, "assigned", timeout=90)
    run.produce(rate=1_500)
    with run.fault():
        _wait_progress(run, 2_000)
        private_stack.restart("kafka")
    run.finish(timeout=300)
    assert bridge.alive(), bridge.log_tail()


def test_opensearch_frozen_two_minutes(namespace: Settings, processes: ProcessGroup, report: Report,
                                       private_stack: PrivateStack) -> None:
    private_stack.up("opensearch")
    settings = private_stack.settings(namespace.replace(bulk_batch_size=500), "opensearch")
    engine = open_store(settings, setup=True)
    run = FaultRun("5. OpenSearch frozen (SIGSTOP) 2 min", settings, engine, processes, report)
    run.prepare(10_000)
    run.start("worker")
    bridge = run.start("bridge")
    processes.wait_for_log(bridge, "assigned", timeout=90)
    broker = redis.Redis.from_url(settings.broker_url)
    run.produce(rate=250)  # 40 s of traffic, most of it while the engine is frozen
    rss, queued = [], []
    try:
        with run.fault():
            _wait_progress(run, 1_000)
            private_stack.signal("opensearch", signal.SIGSTOP)
            frozen_until = time.monotonic() + OUTAGE_S
            while time.monotonic() < frozen_until:
                rss.append(psutil.Process(bridge.process.pid).memory_info().rss)
                queued.append(broker.llen(settings.celery_queue))
                time.sleep(1)
            private_stack.signal("opensearch", signal.SIGCONT)
    finally:
        private_stack.signal("opensearch", signal.SIGCONT)
    run.note(f"bridge RSS max {max(rss) / 2**20:.0f} MiB, Celery queue max {max(queued)} tasks")
    run.finish(timeout=300)
    log = bridge.log_path.read_text()
    assert "revoked" not in log and " lost " not in log, "the consumer must stay in its group"
    assert max(rss) < 300 * 2**20, f"bridge memory grew to {max(rss) / 2**20:.0f} MiB"
    # In flight is capped by BULK_MAX_PARALLEL_FLUSHES; a batch re-sent after a timeout may briefly
    # sit next to its first copy, hence twice the cap.
    assert max(queued) <= 2 * settings.bulk_max_parallel_flushes, queued
    engine.close()
