"""What the worker sends back to Kafka: dead letters and copies of ERROR logs.

Both are sent with an idempotent, acks=all producer and flushed before the task reports success, so
a batch only counts as done once its rejects and its error logs are durably in Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from panopticon.exceptions import KafkaUnavailable
from panopticon.kafka import producer_config
from panopticon.settings import Settings


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    value: bytes
    reason: str
    index: int | None = None  # the item's position when its record holds several documents (OTLP)

    @property
    def key(self) -> str:
        coordinates = f"{self.topic}-{self.partition}-{self.offset}"
        return coordinates if self.index is None else f"{coordinates}-{self.index}"

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        headers: list[tuple[str, str | bytes | None]] = [
            ("panopticon.error.reason", self.reason.encode()),
            ("panopticon.source.topic", self.topic.encode()),
            ("panopticon.source.partition", str(self.partition).encode()),
            ("panopticon.source.offset", str(self.offset).encode()),
        ]
        if self.index is not None:
            headers.append(("panopticon.source.index", str(self.index).encode()))
        return headers


class Outbox:
    """One producer per worker process."""

    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.settings = settings
        self.producer = producer or Producer(producer_config(settings))
        self._failures: list[KafkaError] = []

    def _on_delivery(self, error: KafkaError | None, _message: Message | None) -> None:
        if error is not None:
            self._failures.append(error)

    def dead_letter(self, letter: DeadLetter) -> None:
        """Original bytes as the value; reason and source in headers (as Kafka Connect does)."""
        self._produce(self.settings.kafka_apm_dlq_topic, letter.key, letter.value, letter.headers())

    def error_log(self, doc_id: str, document: dict[str, Any]) -> None:
        self._produce(self.settings.kafka_apm_log_error_topic, doc_id, orjson.dumps(document), None)

    def _produce(self, topic: str, key: str, value: bytes,
                 headers: list[tuple[str, str | bytes | None]] | None) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key.encode(), headers=headers,
                                      on_delivery=self._on_delivery)
                return
            except BufferError:
                self.producer.poll(0.1)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything sent is acknowledged; raise if anything was not."""
        remaining = self.producer.flush(timeout)
        failures, self._failures = self._failures, []
        if remaining or failures:
            first = failures[0].str() if failures else f"{remaining} messages not delivered in {timeout}s"
            raise KafkaUnavailable(f"kafka did not acknowledge dead letters / error logs: {first}")
