"""The live stream knows error groups, on the real pipeline: apm.logs -> bridge -> worker (fingerprint, new
group) -> apm.logs.error -> relay -> Redis -> `ws` -> real WebSocket clients.

The storm: 10,000 copies of one error and 10 of another within a minute. A `collapse=1` client receives both
groups and at most one summary per group per interval, whose counts add up to every log; a plain client still
receives every one; a `group=` client only its group's.
"""

from __future__ import annotations

import time
from collections import defaultdict

import orjson

from panopticon.kafka import ensure_topics
from panopticon.model.times import iso_to_ms
from panopticon.processing.fingerprint import identify
from panopticon.settings import Settings
from panopticon.storage import SearchStore
from tests.integration.test_error_stream import Client, start_stream, stream_settings, wait_until, ws_url
from tests.integration.traffic import produce

STORM = 10_000
OTHER = 10
INTERVAL_S = 2.0


def test_a_storm_collapses_for_collapse_clients_and_reaches_plain_clients_whole(
        namespace: Settings, store: SearchStore, processes) -> None:
    # A plain client must keep up with 10,010 messages in seconds: its queue is not what this test is about.
    settings = stream_settings(namespace, ws_collapse_interval_seconds=INTERVAL_S, ws_client_queue_size=20_000,
                               ws_ping_interval_seconds=600)
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                             settings.kafka_apm_dlq_topic])
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    _relay, ws = start_stream(processes, settings)
    processes.wait_for_log(bridge, "assigned", timeout=120)
    run = settings.index_prefix
    storm_text, other_text = "order {n} failed: payment gateway timeout", "stock for sku {n} went negative"
    storm_fp = identify("storm", storm_text.format(n=1), {}).fingerprint
    other_fp = identify("storm", other_text.format(n=1), {}).fingerprint
    assert storm_fp != other_fp

    plain = Client(ws_url(settings))
    collapsed = Client(ws_url(settings, "collapse=1"))
    only_other = Client(ws_url(settings, f"group={other_fp}"))
    wait_until(lambda: all(c.ws.connected for c in (plain, collapsed, only_other)), "3 clients")

    now = int(time.time() * 1000)
    logs = [(f"{run}s{n}", storm_text.format(n=n)) for n in range(STORM)]
    for k in range(OTHER):  # spread through the storm
        logs.insert((k + 1) * STORM // (OTHER + 1), (f"{run}o{k}", other_text.format(n=k)))
    produce(settings, [("log", orjson.dumps({"event_id": event, "timestamp": now + n, "service_name": "storm",
                                             "environment": "prod", "level": "ERROR", "message": text}))
                       for n, (event, text) in enumerate(logs)], rate=1000)  # about 10 s: several intervals
    every = {event for event, _ in logs}

    plain.wait_for_ids(every, running=ws)
    assert sorted(plain.ids()) == sorted(every), "a plain client still receives every log, once"
    first = [e for e in plain.logs() if e["log"]["new_group"]]
    assert sorted(e["log"]["fingerprint"] for e in first) == sorted([storm_fp, other_fp]), "one new log per group"
    assert all(e["log"]["fingerprint"] in (storm_fp, other_fp) for e in plain.logs())

    only_other.wait_for_ids({event for event, _ in logs if event.startswith(f"{run}o")}, running=ws)
    time.sleep(INTERVAL_S)
    assert {e["log"]["fingerprint"] for e in only_other.logs()} == {other_fp} and len(only_other.logs()) == OTHER

    produced = {storm_fp: STORM, other_fp: OTHER}

    def accounted() -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for event in list(collapsed.events):
            if event["event"] == "error-log":
                counts[event["log"]["fingerprint"]] += 1
            elif event["event"] == "error-group":
                counts[event["fingerprint"]] += event["count"]
        return dict(counts)

    wait_until(lambda: accounted() == produced, "the collapse client's first occurrences and summaries add up",
               running=ws)
    shown = [e for e in collapsed.events if e["event"] == "error-log"]
    assert sorted(e["log"]["fingerprint"] for e in shown) == sorted(produced), "both groups, one log each"
    summaries: dict[str, list[dict]] = defaultdict(list)
    for event in collapsed.events:
        if event["event"] == "error-group":
            summaries[event["fingerprint"]].append(event)
    assert set(summaries) <= set(produced) and summaries[storm_fp]
    for fingerprint, sent in summaries.items():
        times = [iso_to_ms(s["at"]) for s in sent]
        assert all(b - a >= INTERVAL_S * 1000 for a, b in zip(times, times[1:], strict=False)), \
            f"at most one summary of {fingerprint} per {INTERVAL_S} s: {times}"
    storm_summaries = len(summaries[storm_fp])
    print(f"\nstorm of {STORM + OTHER} error logs: the plain client got {len(plain.logs())} messages, the collapse "
          f"client {len(collapsed.events)} ({len(shown)} logs and {sum(map(len, summaries.values()))} summaries, "
          f"{storm_summaries} for the storm's group)")
    assert len(collapsed.events) < 100
