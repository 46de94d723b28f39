"""What the worker sends back to Kafka: dead letters and copies of ERROR logs.

Both are sent with an idempotent, acks=all producer and flushed before the task reports success, so
a batch only counts as done once its rejects and its error logs are durably in Kafka.

A dead letter always fits its topic: a payload longer than the topic takes (its max.message.bytes, read
once, and never more than DLQ_MAX_MESSAGE_BYTES) is cut, and the headers say so, with the original size
and sha256, so the reason and the source coordinates always reach the topic. Kafka's own refusals are
translated here: KafkaRejected when retrying cannot help, KafkaUnavailable when it can.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from panopticon.exceptions import KafkaRejected, KafkaUnavailable
from panopticon.kafka import producer_config, topic_max_message_bytes
from panopticon.settings import Settings

# Room kept in a dead-letter record for its key, headers and Kafka's record overhead.
DLQ_HEADROOM_BYTES = 16_384
Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    value: bytes
    reason: str
    index: int | None = None  # the item's position when its record holds several documents (OTLP)
    original_size: int | None = None  # set when `value` was cut to fit the topic
    original_sha256: str | None = None

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
        if self.original_size is not None:
            headers.append(("panopticon.payload.truncated", b"true"))
            headers.append(("panopticon.payload.size", str(self.original_size).encode()))
            headers.append(("panopticon.payload.sha256", (self.original_sha256 or "").encode()))
        return headers

    def fitted(self, limit: int) -> DeadLetter:
        """This letter with its payload cut to `limit` bytes, when it is longer (see the module docstring)."""
        if len(self.value) <= limit:
            return self
        return replace(self, value=self.value[:limit], original_size=len(self.value),
                       original_sha256=hashlib.sha256(self.value).hexdigest())


def payload_limit(settings: Settings, topic_limit: int | None) -> int:
    """The longest dead-letter payload: what the topic takes, never more than DLQ_MAX_MESSAGE_BYTES, less room
    for the key and headers (pure; the rule tests/unit/processing/test_outbox.py checks)."""
    limit = settings.dlq_max_message_bytes if topic_limit is None else min(topic_limit, settings.dlq_max_message_bytes)
    return max(1024, limit - DLQ_HEADROOM_BYTES)


class Outbox:
    """One producer per worker process."""

    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.settings = settings
        self.producer = producer or Producer(producer_config(settings))
        self._failures: list[KafkaError] = []
        self.dlq_limit = payload_limit(settings, topic_max_message_bytes(settings, settings.kafka_apm_dlq_topic))

    def _on_delivery(self, error: KafkaError | None, _message: Message | None) -> None:
        if error is not None:
            self._failures.append(error)

    def dead_letter(self, letter: DeadLetter) -> None:
        """Original bytes as the value; reason and source in headers (as Kafka Connect does)."""
        fitted = letter.fitted(self.dlq_limit)
        self._produce(self.settings.kafka_apm_dlq_topic, fitted.key, fitted.value, fitted.headers())

    def error_log(self, doc_id: str, document: dict[str, Any]) -> None:
        self._produce(self.settings.kafka_apm_log_error_topic, doc_id, orjson.dumps(document), None)

    def _produce(self, topic: str, key: str, value: bytes, headers: Headers | None) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key.encode(), headers=headers,
                                      on_delivery=self._on_delivery)
                return
            except BufferError:
                self.producer.poll(0.1)
            except KafkaException as exc:  # refused before sending (e.g. MSG_SIZE_TOO_LARGE)
                raise _translate(exc.args[0], topic) from None

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything sent is acknowledged; raise if anything was not."""
        remaining = self.producer.flush(timeout)
        failures, self._failures = self._failures, []
        if failures:
            raise _translate(failures[0], "the dead-letter or error topic")
        if remaining:
            raise KafkaUnavailable(f"kafka did not acknowledge {remaining} dead letters / error logs in {timeout}s")


def _translate(error: KafkaError, topic: str) -> KafkaRejected | KafkaUnavailable:
    """Our exception for a Kafka error: retrying helps only when Kafka says it may."""
    text = f"kafka refused a record for {topic}: {error.str()}"
    if error.retriable() or error.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT,
                                             KafkaError._ALL_BROKERS_DOWN):
        return KafkaUnavailable(text)
    return KafkaRejected(text)
