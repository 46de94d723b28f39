"""Scenarios 6 and 7: the engine refuses some items; producers send poison."""

from __future__ import annotations

import time

from panopticon.settings import Settings
from panopticon.storage import LOGS, TRACES, SearchStore
from tests.faults.harness import FaultRun, Report, Row, dead_letter_sources, ensure_pipeline_topics
from tests.faults.proxy import BulkRejectingProxy
from tests.integration.processes import ProcessGroup
from tests.integration.traffic import BAD_MESSAGES, produce


def test_item_level_429s_only_refused_items_retried(namespace: Settings, store: SearchStore,
                                                    processes: ProcessGroup, report: Report) -> None:
    settings = namespace.replace(bulk_batch_size=500)
    with BulkRejectingProxy(settings.elasticsearch_node, reject_ratio=0.10) as proxy:
        run = FaultRun("6. 10% of bulk items answered 429", settings, store, processes, report)
        run.prepare(10_000)
        run.start("worker", settings.replace(elasticsearch_node=proxy.url))
        run.start("bridge")
        with run.fault():
            run.produce(rate=2_000)
            run.producer.join(120)
        row = run.finish(timeout=300)
        with proxy.lock:
            # The data streams' documents; the error-groups registry's creates pass the proxy too (refused alike).
            streams = {store.name(LOGS), store.name(TRACES)}
            seen = {doc_id: n for (index, doc_id), n in proxy.seen.items() if index in streams}
            refused = {doc_id: n for (index, doc_id), n in proxy.refused.items() if index in streams}
    assert len(seen) == row.valid
    wrong = {doc_id: (n, refused.get(doc_id, 0)) for doc_id, n in seen.items() if n != 1 + refused.get(doc_id, 0)}
    assert not wrong, f"ids sent other than once plus once per refusal: {list(wrong.items())[:5]}"
    share = sum(refused.values()) / sum(seen.values())
    assert 0.05 < share < 0.15, share
    row.notes = f"{sum(refused.values())} items refused with 429 ({share:.1%} of bulk items); each id sent " \
                f"exactly 1 + its refusals times"
    report.amend(row)


def test_one_percent_poison_is_dead_lettered(namespace: Settings, store: SearchStore, processes: ProcessGroup,
                                             report: Report) -> None:
    run = FaultRun("7a. 1% malformed messages", namespace.replace(bulk_batch_size=500), store, processes, report)
    run.prepare(10_000, bad_ratio=0.01)
    run.start("worker")
    run.start("bridge")
    run.produce(rate=2_000)
    row = run.finish(timeout=300)  # asserts: every valid id stored once, every bad one dead-lettered
    assert row.dead_lettered == run.produced.bad > 50


def test_all_poison_trips_the_cap_and_stops_loudly(namespace: Settings, processes: ProcessGroup,
                                                   report: Report) -> None:
    settings = namespace.replace(dlq_window=500, bulk_batch_size=250)
    ensure_pipeline_topics(settings)
    messages = [("span" if i % 2 else "log", BAD_MESSAGES[i % len(BAD_MESSAGES)]) for i in range(3_000)]
    produce(settings, messages)
    began = time.monotonic()
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    bridge.process.wait(180)
    log = bridge.log_path.read_text()
    assert bridge.process.returncode == 3, bridge.log_tail()
    assert "CRITICAL" in log and "PIPELINE STOPPED" in log, bridge.log_tail()
    letters = dead_letter_sources(settings)
    report.add(Row(scenario="7b. 100% malformed: cap stops bridge", produced=len(messages), valid=0, stored=0,
                   lost=0, duplicates=0, unexpected=0, dead_lettered=len(letters), recovery_s=None,
                   wall_s=round(time.monotonic() - began, 1),
                   notes=f"bridge exit 3 with CRITICAL PIPELINE STOPPED after {len(letters)} dead letters"))
