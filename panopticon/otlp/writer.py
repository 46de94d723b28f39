"""The receiver's one way out: a request's data, written to its OTLP topic, acknowledged by Kafka (acks=all).

`write` returns only once Kafka has acknowledged the record, so an answer of 200 means the data is durable
in Kafka; the bridge and the workers do the rest, and nothing is lost while they or the engine are down.
Any doubt (queue full, broker unreachable, no acknowledgement in OTLP_KAFKA_TIMEOUT_SECONDS) raises
KafkaUnavailable, which the app answers with 503 and Retry-After; the client retries, and deterministic
ids make a record that was written after all harmless.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from panopticon.exceptions import KafkaUnavailable
from panopticon.kafka import ensure_topics, otlp_producer_config, otlp_record_limit, topic_max_message_bytes
from panopticon.settings import Settings

log = logging.getLogger(__name__)

# Delivery waits a little past librdkafka's own message timeout, so that its verdict arrives first.
_GRACE_S = 2.0


class RecordTooLarge(ValueError):
    """Kafka refuses a record this large (the topic's max.message.bytes): retrying will not help (413)."""


class KafkaWriter:
    def __init__(self, settings: Settings, topics: list[str], producer: Producer | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.timeout = settings.otlp_kafka_timeout_seconds
        self.producer = producer or Producer(otlp_producer_config(settings))
        self._ready = threading.Event()
        self._ready_lock = threading.Lock()
        self._running = True
        # Delivery reports are served by poll(); one thread polls for every request thread.
        self._poller = threading.Thread(target=self._poll, name="otlp-kafka-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while self._running:
            self.producer.poll(0.1)

    def close(self) -> None:
        self._running = False
        self._poller.join(5)
        self.producer.flush(self.timeout)

    def ensure_topics(self) -> None:
        """Create the OTLP topics (large enough for a whole request) before the first write: a topic
        created by the broker on first use would take the broker's default record size."""
        if self._ready.is_set():
            return
        with self._ready_lock:
            if self._ready.is_set():  # another request thread did it while this one waited
                return
            try:
                ensure_topics(self.settings, self.topics, timeout=self.timeout)
            except KafkaException as exc:
                raise KafkaUnavailable(f"cannot reach Kafka to check the OTLP topics: {exc}") from exc
            needed = otlp_record_limit(self.settings)
            for topic in self.topics:
                limit = topic_max_message_bytes(self.settings, topic, timeout=self.timeout)
                if limit is not None and limit < needed:
                    log.warning("topic %s takes records of at most %d bytes (max.message.bytes) but a request may "
                                "be %d (OTLP_MAX_BODY_BYTES): larger requests will be answered 413; raise the "
                                "topic's max.message.bytes", topic, limit, needed)
            self._ready.set()

    def write(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Produce one record and wait for Kafka's acknowledgement; KafkaUnavailable / RecordTooLarge if none."""
        self.ensure_topics()
        done = threading.Event()
        outcome: list[KafkaError | None] = []

        def delivered(error: KafkaError | None, _message: Message | None) -> None:
            outcome.append(error)
            done.set()

        try:
            self.producer.produce(topic, value=value, key=key, on_delivery=delivered)
        except BufferError:
            raise KafkaUnavailable("the Kafka producer's queue is full") from None
        except KafkaException as exc:
            _raise_for(exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None, str(exc))
        if not done.wait(self.timeout + _GRACE_S):
            raise KafkaUnavailable(f"Kafka did not acknowledge the record in {self.timeout:g} s")
        if outcome[0] is not None:
            _raise_for(outcome[0], outcome[0].str())


def _raise_for(error: KafkaError | None, text: str) -> None:
    if error is not None and error.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE):
        raise RecordTooLarge(f"Kafka refuses a record this large: {text}")
    raise KafkaUnavailable(f"Kafka did not take the record: {text}")
