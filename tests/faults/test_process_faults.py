"""Scenarios 1, 2, 8 and 9: the pipeline's own processes die, stop or come and go during ingest.

These run against the shared stack (the services themselves are not touched), each in its own
namespace. Random moments come from a seeded generator, so a failing run can be replayed.
"""

from __future__ import annotations

import random
import signal
import time

import psutil

from panopticon.settings import Settings
from panopticon.storage import SearchStore
from tests.faults.harness import FaultRun, Report, stored_total
from tests.integration.processes import ProcessGroup


def _wait_progress(run: FaultRun, at_least: int, timeout: float = 120.0) -> None:
    """Wait until some data is stored, so the next fault lands in the middle of ingest."""
    deadline = time.monotonic() + timeout
    while stored_total(run.store) < at_least:
        assert time.monotonic() < deadline, f"nothing stored after {timeout}s"
        time.sleep(0.3)


def test_kill_9_bridge_repeatedly(namespace: Settings, store: SearchStore, processes: ProcessGroup,
                                  report: Report) -> None:
    settings = namespace.replace(bulk_batch_size=500, bulk_task_timeout_seconds=30)
    run = FaultRun("1. kill -9 bridge x3 at random moments", settings, store, processes, report)
    run.prepare(16_000)
    rng = random.Random(1)
    # Three seeded moments inside the ~50 s of producing, at least 6 s apart.
    moments = sorted(rng.uniform(4, 44) for _ in range(3))
    moments = [m + 6 * i for i, m in enumerate(sorted(m - 6 * i for i, m in enumerate(moments)))]
    run.start("worker")
    bridge = run.start("bridge")
    processes.wait_for_log(bridge, "assigned", timeout=90)
    run.produce(rate=320)
    began = time.monotonic()
    with run.fault():
        for n, moment in enumerate(moments, 1):
            time.sleep(max(0.0, began + moment - time.monotonic()))
            assert run.producing(), "every kill must land while events are still arriving"
            processes.kill(bridge)
            run.note(f"kill {n} at {moment:.1f}s, {stored_total(store)} stored")
            bridge = run.start("bridge")
    run.finish(timeout=300)


def test_kill_9_worker_child(namespace: Settings, store: SearchStore, processes: ProcessGroup,
                             report: Report) -> None:
    settings = namespace.replace(bulk_batch_size=500, bulk_task_timeout_seconds=30)
    run = FaultRun("2a. kill -9 worker pool child x3", settings, store, processes, report)
    run.prepare(12_000)
    rng = random.Random(2)
    worker = run.start("worker")
    run.start("bridge")
    run.produce(rate=1_500)
    with run.fault():
        for _ in range(3):
            _wait_progress(run, stored_total(store) + 300)
            time.sleep(rng.uniform(0.1, 1.0))
            children = processes.children(worker)
            assert children, "the worker has no pool children"
            victim = rng.choice(children)
            victim.kill()
            run.note(f"killed child {victim.pid}")
    run.finish(timeout=300)


def test_kill_9_worker_main_process(namespace: Settings, store: SearchStore, processes: ProcessGroup,
                                    report: Report) -> None:
    # Its prefetched batches wait unacknowledged in Redis until the bridge hands them off again.
    settings = namespace.replace(bulk_batch_size=500, bulk_task_timeout_seconds=20, bulk_queue_timeout_seconds=30)
    run = FaultRun("2b. kill -9 worker main process", settings, store, processes, report)
    run.prepare(12_000)
    worker = run.start("worker")
    run.start("bridge")
    run.produce(rate=1_500)
    with run.fault():
        _wait_progress(run, 2_000)
        orphans = processes.children(worker)
        processes.kill(worker)  # the main process only; its pool children are orphaned, as with kill -9
        time.sleep(2)
        run.note(f"{sum(1 for p in orphans if p.is_running())} orphaned children still running after 2s")
        run.start("worker")
    run.finish(timeout=300)


def test_sigterm_every_process_then_restart(namespace: Settings, store: SearchStore, processes: ProcessGroup,
                                            report: Report) -> None:
    settings = namespace.replace(bulk_batch_size=500)
    run = FaultRun("8. SIGTERM all processes, restart", settings, store, processes, report)
    run.prepare(12_000)
    worker = run.start("worker")
    bridge = run.start("bridge")
    run.produce(rate=1_500)
    with run.fault():
        _wait_progress(run, 3_000)
        for running in (bridge, worker):
            running.process.send_signal(signal.SIGTERM)
        for running in (bridge, worker):
            running.process.wait(90)
            assert running.process.returncode == 0, f"{running.name} did not stop cleanly:\n{running.log_tail()}"
        assert "bridge stopped" in bridge.log_path.read_text()
        run.note(f"stopped cleanly at {stored_total(store)} stored")
        run.start("worker")
        run.start("bridge")
    run.finish(timeout=300)


def test_second_bridge_joins_and_leaves_every_30s(namespace: Settings, store: SearchStore,
                                                  processes: ProcessGroup, report: Report) -> None:
    run = FaultRun("9. 2nd bridge joins/leaves every 30s", namespace, store, processes, report)
    run.prepare(9_000)
    run.start("worker")
    first = run.start("bridge")
    processes.wait_for_log(first, "assigned", timeout=90)
    run.produce(rate=90)  # about 100 s of ingest: two joins and two leaves
    with run.fault():
        for _cycle in range(2):
            second = run.start("bridge")
            time.sleep(30)
            processes.wait_for_log(second, "assigned", timeout=30)
            second.process.send_signal(signal.SIGTERM)
            second.process.wait(60)
            assert second.process.returncode == 0, second.log_tail()
            time.sleep(30)
    log = first.log_path.read_text()
    run.note(f"first bridge saw {log.count('revoked')} revocations and {log.count('assigned')} assignments")
    assert first.alive() and " lost " not in log, first.log_tail()
    run.finish(timeout=300)


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss
