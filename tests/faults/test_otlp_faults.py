"""Scenario 16: kill -9 of the `otlp` receiver while an OpenTelemetry SDK exports to it.

The promise under test: a 200 means Kafka has the data. The SDK's real OTLP/HTTP exporter sends batches in a
loop; a wrapper records which spans each `export` call reported as exported (SUCCESS, i.e. a 200) and which it
gave up on. The receiver (gunicorn's arbiter and its worker, with requests in flight) is killed with SIGKILL
twice and started again. Every span the SDK saw acknowledged must be stored exactly once; spans of failed
exports may or may not be (the client did not hear a 200), and nothing that was never sent may appear.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from panopticon.settings import Settings
from panopticon.storage import TRACES, SearchStore
from tests.faults.harness import Report, Row
from tests.integration.processes import ProcessGroup, free_port, start_receiver
from tests.integration.traffic import id_counts
from tests.otel import MS, recorded_spans, resource, server_trace

BATCHES = 300
TRACES_PER_BATCH = 10  # 2 spans each


def _export_loop(url: str, acknowledged: set[str], failed: set[str], stop: threading.Event) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=5)
    start_ns = time.time_ns() - 120_000 * MS
    with recorded_spans(resource("killed-receiver")) as (tracer, memory):
        for batch in range(BATCHES):
            if stop.is_set():
                return
            for n in range(TRACES_PER_BATCH):
                server_trace(tracer, start_ns=start_ns + (batch * TRACES_PER_BATCH + n) * MS, children=1)
            spans = memory.get_finished_spans()
            memory.clear()
            ids = {f"{s.context.span_id:016x}" for s in spans}
            (acknowledged if exporter.export(spans) == SpanExportResult.SUCCESS else failed).update(ids)
            time.sleep(0.05)


def _kill_receiver(processes: ProcessGroup, running) -> None:
    """SIGKILL gunicorn's arbiter and its worker together: nothing gets to finish or flush."""
    victims = [running.process.pid, *(p.pid for p in processes.children(running))]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    running.process.wait(30)


def test_kill_9_otlp_while_an_sdk_exports(namespace: Settings, store: SearchStore, processes: ProcessGroup,
                                          report: Report) -> None:
    began = time.monotonic()
    settings = namespace.replace(otlp_http_port=free_port())
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    receiver = start_receiver(processes, settings)
    processes.wait_for_log(bridge, "assigned", timeout=90)
    acknowledged: set[str] = set()
    failed: set[str] = set()
    stop = threading.Event()
    exporter = threading.Thread(target=_export_loop, args=(receiver.url, acknowledged, failed, stop), daemon=True)
    exporter.start()
    notes = []
    try:
        for kill in range(2):
            time.sleep(6)
            assert exporter.is_alive(), "each kill must land while the SDK is exporting"
            _kill_receiver(processes, receiver.process)
            notes.append(f"kill {kill + 1} after {len(acknowledged)} spans acknowledged")
            time.sleep(1)
            receiver = start_receiver(processes, settings)
        fault_ended = time.monotonic()
        exporter.join(300)
    finally:
        stop.set()
    assert not exporter.is_alive(), "the export loop did not finish"

    deadline = time.monotonic() + 180
    stored: set[str] = set()
    caught_up = None
    while time.monotonic() < deadline:
        store.refresh(f"{settings.index_prefix}*")
        stored = set(id_counts(store, TRACES, "span_id"))
        if acknowledged <= stored:
            caught_up = time.monotonic()
            break
        time.sleep(1)
    time.sleep(3)
    counts = id_counts(store, TRACES, "span_id")
    sent = acknowledged | failed
    lost = len(acknowledged - set(counts))
    duplicates = sum(1 for n in counts.values() if n > 1)
    unexpected = len(set(counts) - sent)
    notes.append(f"{len(failed)} spans in exports the SDK reported failed, {len(failed & set(counts))} of them stored")
    row = Row(scenario="16. kill -9 otlp receiver x2 while an SDK exports", produced=len(sent),
              valid=len(acknowledged), stored=len(set(counts) & acknowledged), lost=lost, duplicates=duplicates,
              unexpected=unexpected, dead_lettered=0,
              recovery_s=None if caught_up is None else round(max(0.0, caught_up - fault_ended), 1),
              wall_s=round(time.monotonic() - began, 1), notes="; ".join(notes))
    report.add(row)
    assert acknowledged, "the SDK never saw an acknowledgement"
    assert (lost, duplicates, unexpected) == (0, 0, 0), row
