"""The relay: `apm.logs.error` -> Redis pub/sub, one publish per error log, offsets committed after.

    poll (first message waits, the rest are taken as they are) -> envelope (cursor, id) -> one MULTI/EXEC
    of PUBLISHes + the publish order (below) -> offsets stored -> commit about once a second

It runs as its own process (`relay` in the Procfile), not inside the bridge: a Redis outage then
stalls only the live feed, never ingest, and each can be restarted alone. While Redis is down the
relay keeps the batch it could not publish and retries it with backoff; it commits nothing it has
not published, so a crash replays (at-least-once; the `ws` hub drops repeats by id). Kafka outages
are librdkafka's to ride out: poll simply returns nothing until the broker is back.

The publish order: with its PUBLISHes, in the same transaction, the relay appends each cursor to a Redis
list (`<ERROR_LOG_CHANNEL>:order`, the last WS_DEDUPE_WINDOW). Redis runs the transactions of several
relays one after the other, so the list is in exactly the order every subscriber received the messages;
a `ws` process that starts (or restarts) reads it, and places the cursors its clients reconnect with.

Anyone who can produce to the error topic can send anything: a message that is not a stored log
document (not JSON, no valid `ingested_at`, a key that is not UTF-8, nesting too deep to encode, larger
than MAX_MESSAGE_BYTES) is skipped with its position logged and counted, and the relay goes on. The
`ws` hub checks the fields its filters use.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from panopticon import telemetry
from panopticon.errorstream.protocol import MAX_ID_CHARS, envelope, make_cursor, order_key
from panopticon.kafka import consumer_config, ensure_topics
from panopticon.model.times import iso_to_ms
from panopticon.settings import Settings

log = logging.getLogger(__name__)

BATCH = 500
COMMIT_INTERVAL_S = 1.0


def relay_envelope(message: Message, now_ms: int, max_age_ms: int,
                   max_bytes: int = 1_048_576) -> tuple[bytes, str] | str:
    """(envelope, cursor) for one error-topic message, or why it is skipped: "too_old" (not news any more)
    or "invalid" (not a stored log document; logged)."""
    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
    value = message.value() or b""
    try:
        if len(value) > max_bytes:
            raise ValueError(f"{len(value)} bytes, more than MAX_MESSAGE_BYTES={max_bytes}")
        log_doc = orjson.loads(value)
        if not isinstance(log_doc, dict):
            raise ValueError(f"expected a JSON object, got {type(log_doc).__name__}")
        ingested_ms = iso_to_ms(log_doc["ingested_at"])
        key = message.key()
        doc_id = key.decode() if key else str(log_doc.get("event_id") or
                                               f"{message.topic()}-{message.partition()}-{message.offset()}")
        if not 0 < len(doc_id) <= MAX_ID_CHARS:
            raise ValueError(f"document id of {len(doc_id)} characters")
        if now_ms - ingested_ms > max_age_ms:
            return "too_old"
        cursor = make_cursor(ingested_ms, doc_id)
        return envelope(doc_id, cursor, log_doc), cursor
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, KeyError, TypeError, ValueError, AttributeError,
            UnicodeDecodeError) as exc:
        log.error("skipping %s: not a stored log document (%s)", where, str(exc)[:200])
        return "invalid"


class Relay:
    def __init__(self, settings: Settings, consumer: Consumer | None = None,
                 client: redis.Redis | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.consumer = consumer or Consumer(consumer_config(settings, group=settings.error_relay_group))
        self.redis = client or redis.Redis.from_url(settings.redis_url(), socket_connect_timeout=3,
                                                    socket_timeout=10, socket_keepalive=True)
        self.clock = clock
        self.running = True
        self.published = 0
        self.skipped = 0
        self._positions: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()

    def run(self) -> None:
        topic = self.settings.kafka_apm_log_error_topic
        ensure_topics(self.settings, [topic])
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("relay consuming %s as group %s, publishing to %s", topic, self.settings.error_relay_group,
                 self.settings.error_channel)
        try:
            while self.running:
                self.step()
            self._commit(force=True)
        finally:
            self.consumer.close()
            log.info("relay stopped after publishing %d error logs", self.published)

    def stop(self, *_args: Any) -> None:
        self.running = False

    def step(self) -> None:
        messages = self._poll()
        now_ms = int(self.clock() * 1000)
        max_age_ms = self.settings.error_relay_max_age_seconds * 1000
        batch: list[tuple[bytes, str]] = []
        for message in messages:
            result = relay_envelope(message, now_ms, max_age_ms, self.settings.max_message_bytes)
            if isinstance(result, str):
                self.skipped += 1
                telemetry.ERRORS_SKIPPED.labels(result).inc()
            else:
                batch.append(result)
        self._publish(batch)
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is not None and partition is not None and offset is not None:  # always set on a fetched one
                self._positions[(topic, partition)] = offset + 1
        self._commit(force=False)

    def _poll(self) -> list[Message]:
        """Wait for the first message, then take what is already fetched: low latency, few round trips."""
        first = self.consumer.poll(0.5)
        if first is None:
            return []
        messages = [first, *self.consumer.consume(num_messages=BATCH - 1, timeout=0)]
        return [m for m in messages if self._usable(m)]

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("kafka: %s", error)
        return False

    def _publish(self, batch: list[tuple[bytes, str]]) -> None:
        """One round trip for the whole batch; on a Redis error wait and send it all again."""
        backoff = 0.2
        order, window = order_key(self.settings.error_channel), self.settings.ws_dedupe_window
        while batch:
            try:
                # MULTI/EXEC: the list's order is the order subscribers received, even with several relays.
                pipe = self.redis.pipeline(transaction=True)
                for body, _cursor in batch:
                    pipe.publish(self.settings.error_channel, body)
                pipe.rpush(order, *(cursor for _body, cursor in batch))
                pipe.ltrim(order, -window, -1)
                pipe.execute()
                self.published += len(batch)
                telemetry.ERRORS_RELAYED.inc(len(batch))
                return
            except (redis.RedisError, OSError) as exc:
                log.warning("redis publish failed (%s); %d error logs held, retrying in %.1fs", exc, len(batch),
                            backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                if not self.running:
                    raise SystemExit(1) from exc  # unpublished: leave the offsets uncommitted

    def _commit(self, force: bool) -> None:
        now = time.monotonic()
        if not self._positions or (not force and now - self._last_commit < COMMIT_INTERVAL_S):
            return
        self._last_commit = now
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
        try:
            if force:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("commit failed (will be retried): %s", exc)
            return
        self._positions.clear()

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("relay assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing")

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Everything polled so far has been published: commit it while the partitions are still ours.
        self._commit(force=True)
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._positions = {tp: o for tp, o in self._positions.items() if tp not in gone}


def run_relay(settings: Settings) -> None:
    relay = Relay(settings)
    telemetry.serve(settings.relay_metrics_port, settings.metrics_bind_host, settings.api_auth_tokens, "relay")
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    relay.run()
