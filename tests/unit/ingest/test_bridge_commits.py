"""A commit Kafka refuses (a rebalance, a session time-out) never stops the bridge; it is offered again.

The consumer here is a stand-in that refuses the first commit, as a broker does with REBALANCE_IN_PROGRESS
or ILLEGAL_GENERATION; everything else about the bridge is the real code. The whole path with a real
broker is scenario 14 of the fault suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from panopticon.ingest.bridge import Bridge
from panopticon.settings import load_settings

TP = ("apm.logs", 0)


class RefusingConsumer:
    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.commits: list[list[Any]] = []

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> list[Any]:
        if self.refusals:
            self.refusals -= 1
            raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION, "the group moved on"))
        self.commits.append(offsets)
        return offsets  # a synchronous commit answers with what it committed


def test_a_refused_commit_is_left_to_the_next_one() -> None:
    settings = load_settings({"BRIDGE_COMMIT_INTERVAL_SECONDS": "0.1"}, root=Path(__file__).parent)
    consumer = RefusingConsumer(refusals=1)
    bridge = Bridge(settings, celery=None, consumer=consumer)  # type: ignore[arg-type]
    bridge.assigned.add(TP)
    bridge.offsets.assign(TP, None)
    bridge.offsets.track(TP, 0, 9)
    bridge.offsets.done(TP, 0, 9)
    bridge._commit(force=True)  # refused: no exception escapes
    assert consumer.commits == [] and bridge.offsets.committable() == {TP: 10}
    bridge._commit(force=True)
    (committed,) = consumer.commits
    assert [(tp.topic, tp.partition, tp.offset) for tp in committed] == [(*TP, 10)]
    assert bridge.offsets.committable() == {}


class Delivered:
    """A consumed message as confluent-kafka hands it over."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._at = (topic, partition, offset)

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return b"{}"

    def topic(self) -> str:
        return self._at[0]

    def partition(self) -> int:
        return self._at[1]

    def offset(self) -> int:
        return self._at[2]


def test_a_message_delivered_twice_is_taken_once() -> None:
    """Seen once under load in the kill -9 test: the consumer handed offsets 828.. of a partition out again
    after 1000, and the second batch holding them overlapped the first in the tracker (a ValueError)."""
    settings = load_settings({"BULK_BATCH_SIZE": "1000"}, root=Path(__file__).parent)
    bridge = Bridge(settings, celery=None, consumer=RefusingConsumer(refusals=0))  # type: ignore[arg-type]
    topic = next(iter(bridge.streams))
    bridge.assigned.add((topic, 0))
    bridge.offsets.assign((topic, 0), None)
    bridge._accept([Delivered(topic, 0, n) for n in range(10)])
    bridge._accept([Delivered(topic, 0, n) for n in range(5, 15)])
    bridge._accept([Delivered(topic, 1, n) for n in range(3)])  # another partition is its own sequence
    (batch,) = bridge.batcher.flush_all()
    taken = [(m.partition, m.offset) for m in batch.messages]
    assert taken == [(0, n) for n in range(15)] + [(1, n) for n in range(3)]
    assert bridge._redelivered == 5
