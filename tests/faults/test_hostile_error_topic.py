"""Hostile messages on the error topic: anyone who can produce to `apm.logs.error` can send anything.

Fifteen kinds of malformed messages go through the real relay and the real `ws` hub (one partition,
so one order): what the relay cannot turn into an envelope it skips and counts; what it can, the hub
checks before fan-out, counts by field and drops. Then one good error log: every connected client
receives it, and only it, and both processes are still up with the feed up.
"""

from __future__ import annotations

import re
import urllib.request

import orjson
from confluent_kafka import Producer

from panopticon.kafka import producer_config
from panopticon.settings import Settings
from tests.integration.processes import ProcessGroup
from tests.integration.test_error_stream import (
    Client,
    error_doc,
    free_port,
    hub_stats,
    start_stream,
    stream_settings,
    wait_until,
    ws_url,
)

FILTERS = ["", "service=svc-a", "environment=prod", "level=ERROR", "service=svc-a,svc-b&environment=prod"]


def _hostile(good: dict) -> tuple[list[tuple[bytes | None, bytes]], list[tuple[bytes | None, bytes]]]:
    """(what the relay must skip, what the hub must drop): (key, value) pairs."""
    def doc(**changes) -> bytes:
        return orjson.dumps({**good, **changes})

    key = good["event_id"].encode()
    deep = orjson.dumps(good)[:-1] + b',"attributes":' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}"
    relay_skips = [
        (key + b"-1", b"\xff{ not json"),
        (key + b"-2", b"[1, 2, 3]"),
        (key + b"-3", orjson.dumps({k: v for k, v in good.items() if k != "ingested_at"})),
        (b"\xff\xfe\xfd", doc()),  # a key that is not UTF-8
        (key + b"-5", deep),  # readable, but too deep to encode again
        (b"k" * 600, doc()),  # an id longer than any document id
        (key + b"-7", doc(message="x" * 70_000)),  # over MAX_MESSAGE_BYTES
    ]
    hub_drops = [
        (key + b"-8", doc(service_name=["svc-a", "svc-b"])),  # the one that used to kill the feed
        (key + b"-9", doc(service_name={"svc": "a"})),
        (key + b"-10", doc(environment=3)),
        (key + b"-11", doc(level=5)),
        (key + b"-12", doc(level="PANIC")),
        (key + b"-13", doc(level_num="5")),
        (key + b"-14", doc(trace_id={"$ne": None})),
        (key + b"-15", doc(ingested_at="9999-01-01T00:00:00.000Z")),  # a cursor far in the future
    ]
    return relay_skips, hub_drops


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def _values(text: str, name: str) -> dict[str, float]:
    return {labels: float(v) for labels, v in re.findall(rf'^{name}\{{([^}}]*)\}} (\S+)$', text, re.MULTILINE)}


def test_malformed_error_messages_are_counted_and_dropped_and_the_next_good_one_reaches_every_client(
        namespace: Settings, processes: ProcessGroup) -> None:
    settings = stream_settings(namespace, kafka_topic_partitions=1, max_message_bytes=65_536).replace(
        relay_metrics_port=free_port())
    relay, ws = start_stream(processes, settings)
    clients = [Client(ws_url(settings, FILTERS[n % len(FILTERS)])) for n in range(25)]
    wait_until(lambda: hub_stats(settings)["clients"] >= len(clients), "25 clients")

    good = error_doc(f"{settings.index_prefix}good", service="svc-a")
    relay_skips, hub_drops = _hostile(good)
    producer = Producer(producer_config(settings))
    for key, value in [*relay_skips, *hub_drops, (good["event_id"].encode(), orjson.dumps(good))]:
        producer.produce(settings.kafka_apm_log_error_topic, value, key=key)
    assert producer.flush(60) == 0

    for client in clients:
        client.wait_for_ids({good["event_id"]}, running=ws)
    assert all(client.ids() == [good["event_id"]] for client in clients), "the good one, and only it"
    assert all(client.closed is None for client in clients)
    stats = hub_stats(settings)
    assert stats["feed"] == "up" and stats["invalid"] == len(hub_drops) and stats["delivered"] == 1, stats
    assert relay.alive() and ws.alive()

    dropped = _values(_metrics(settings.ws_port), "panopticon_ws_invalid_messages_total")
    assert dropped == {'field="service_name"': 2.0, 'field="environment"': 1.0, 'field="level"': 2.0,
                       'field="level_num"': 1.0, 'field="trace_id"': 1.0, 'field="cursor"': 1.0}
    skipped = _values(_metrics(settings.relay_metrics_port), "panopticon_error_logs_skipped_total")
    assert skipped.get('reason="invalid"') == len(relay_skips), skipped
    processes.wait_for_log(relay, "not a stored log document")
    processes.wait_for_log(ws, "not a valid error-log envelope")
