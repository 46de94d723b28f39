"""The Kafka bridge: consume `apm.logs` / `apm.spans`, batch, hand batches to Celery, commit last.

The loop, in the order each step runs:
  poll -> batcher (count / bytes / age) -> hand-off queue -> Celery `bulk_index` (at most N in flight)
  -> results -> offset tracker -> commit (about once a second, only contiguous done ranges).

Nothing is committed until the task for every earlier message of that partition has succeeded. A
batch whose task fails, or that has no answer in BULK_TASK_TIMEOUT_SECONDS (a worker died, Redis
lost it), is sent again: writes are idempotent, so a second copy does no harm. When as many closed
batches wait as may be in flight, the bridge pauses its partitions but keeps polling, so it stays in
its group and the memory held is bounded by twice the in-flight batches plus librdkafka's fetch queue.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from panopticon import telemetry
from panopticon.exceptions import PipelineStopped
from panopticon.flow import Stream, streams_by_topic
from panopticon.ingest.batcher import Batch, Batcher, Message
from panopticon.ingest.offsets import OffsetTracker
from panopticon.kafka import consumer_config, ensure_topics
from panopticon.settings import Settings

log = logging.getLogger(__name__)

TP = tuple[str, int]
COMMIT_INTERVAL_S = 1.0
RESULT_POLL_S = 0.02
UNSENT_RETRY_S = 1.0
# The Celery broker or result backend cannot be reached (Redis down or restarting). The bridge must
# outlive that: batches wait and are handed off again, offsets stay uncommitted until they are stored.
CELERY_UNAVAILABLE = (OperationalError, RedisError, ConnectionError, TimeoutError)


class Unsent:
    """Stands in for the AsyncResult of a batch the broker did not take: it reads as a failed task
    after UNSENT_RETRY_S, so the batch takes the ordinary retry path instead of killing the bridge."""

    def __init__(self, error: Exception) -> None:
        self.result = error
        self._retry_at = time.monotonic() + UNSENT_RETRY_S

    @property
    def state(self) -> str:
        return "FAILURE" if time.monotonic() >= self._retry_at else "PENDING"

    def forget(self) -> None:
        pass


@dataclass
class InFlight:
    batch: Batch
    result: Any  # celery AsyncResult
    sent_at: float
    attempts: int = 1


@dataclass
class Throughput:
    """Counters for the periodic throughput line (STREAM_THROUGHPUT_*)."""

    messages: int = 0
    bytes: int = 0
    batches_done: int = 0
    started: float = field(default_factory=time.monotonic)

    def reset(self) -> None:
        self.messages = self.bytes = self.batches_done = 0
        self.started = time.monotonic()


class DeadLetterCap:
    """Stops the pipeline when too many messages of the recent window were dead-lettered."""

    def __init__(self, max_ratio: float, window: int) -> None:
        self.max_ratio = max_ratio
        self.window = window
        self._batches: deque[tuple[int, int]] = deque()
        self._total = 0
        self._dead = 0

    def record(self, total: int, dead: int) -> None:
        self._batches.append((total, dead))
        self._total += total
        self._dead += dead
        while self._batches and self._total - self._batches[0][0] >= self.window:
            old_total, old_dead = self._batches.popleft()
            self._total -= old_total
            self._dead -= old_dead
        if self._total >= self.window and self._dead > self.max_ratio * self._total:
            raise PipelineStopped(
                f"{self._dead} of the last {self._total} messages were dead-lettered "
                f"(cap DLQ_MAX_RATIO={self.max_ratio}); stopping: fix the producer, then restart")


class Bridge:
    def __init__(self, settings: Settings, celery: Celery, consumer: Consumer | None = None) -> None:
        self.settings = settings
        self.celery = celery
        self.streams: dict[str, Stream] = streams_by_topic(settings)
        self.consumer = consumer or Consumer(consumer_config(settings))
        self.batcher = Batcher(
            max_count=settings.bulk_batch_size,
            max_bytes=int(settings.bulk_batch_bytes_mb * 1024 * 1024),
            max_age_s=settings.bulk_flush_interval_ms / 1000,
            max_bytes_by_stream={s.name: s.batch_bytes(settings) for s in self.streams.values()},
        )
        self.offsets = OffsetTracker()
        self.ready: deque[Batch] = deque()
        self.in_flight: dict[str, InFlight] = {}
        self.cap = DeadLetterCap(settings.dlq_max_ratio, settings.dlq_window)
        self.assigned: set[TP] = set()
        self.paused = False
        self.running = True
        self.throughput = Throughput()
        # Messages and bytes consumed per stream in this step, added to the Prometheus counters once
        # per step: two labelled increments per message were a fifth of the bridge's CPU (see bench/).
        self._consumed: dict[str, list[int]] = {}
        self._last_commit = time.monotonic()
        self._last_report = time.monotonic()

    # --- lifecycle ----------------------------------------------------------------------------------
    def run(self) -> None:
        topics = list(self.streams)
        ensure_topics(self.settings, [*topics, self.settings.kafka_apm_log_error_topic,
                                      self.settings.kafka_apm_dlq_topic])
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        log.info("bridge consuming %s as group %s", ", ".join(topics), self.settings.kafka_consumer_group)
        try:
            while self.running:
                self.step()
            self._drain()
        finally:
            self.consumer.close()
            log.info("bridge stopped")

    def stop(self, *_args: Any) -> None:
        """SIGTERM / SIGINT: finish what is in flight, commit, leave the group."""
        self.running = False

    def step(self) -> None:
        for message in self.consumer.consume(num_messages=1000, timeout=self._poll_timeout()):
            self._accept(message)
        self._count_consumed()
        self.ready.extend(self.batcher.due())
        self._collect_results()
        self._send_ready()
        self._apply_backpressure()
        self._commit(force=False)
        self._report()

    def _drain(self, timeout: float = 30.0) -> None:
        """Hand off nothing new; wait for what is in flight, then commit what is done."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            self._collect_results()
            time.sleep(RESULT_POLL_S)
        self._commit(force=True)
        if self.in_flight:
            log.warning("stopping with %d batches unconfirmed; they will be read again", len(self.in_flight))

    # --- consuming ----------------------------------------------------------------------------------
    def _poll_timeout(self) -> float:
        if self.in_flight or self.ready:
            return RESULT_POLL_S
        deadline = self.batcher.next_deadline()
        if deadline is None:
            return 0.5
        return min(0.5, max(0.0, deadline - time.monotonic()))

    def _accept(self, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return
            if error.fatal():
                raise KafkaException(error)
            log.warning("kafka: %s", error)
            return
        value = message.value() or b""
        self.throughput.messages += 1
        self.throughput.bytes += len(value)
        stream = self.streams[message.topic()].name
        counts = self._consumed.setdefault(stream, [0, 0])
        counts[0] += 1
        counts[1] += len(value)
        closed = self.batcher.add(stream, Message(message.topic(), message.partition(), message.offset(), value))
        if closed is not None:
            self.ready.append(closed)

    def _count_consumed(self) -> None:
        for stream, (messages, size) in self._consumed.items():
            telemetry.MESSAGES_CONSUMED.labels(stream).inc(messages)
            telemetry.BYTES_CONSUMED.labels(stream).inc(size)
        self._consumed.clear()

    # --- hand-off -----------------------------------------------------------------------------------
    def _send_ready(self) -> None:
        while self.ready and len(self.in_flight) < self.settings.bulk_max_parallel_flushes:
            batch = self.ready.popleft()
            for tp, (first, last) in batch.offset_ranges().items():
                self.offsets.track(tp, first, last)
            telemetry.BATCH_MESSAGES.labels(batch.stream).observe(len(batch.messages))
            telemetry.BATCH_AGE.labels(batch.stream).observe(max(0.0, time.monotonic() - batch.opened_at))
            self._send(batch, attempts=1)
        telemetry.BATCHES_IN_FLIGHT.set(len(self.in_flight))

    def _send(self, batch: Batch, attempts: int) -> None:
        by_topic: dict[str, list[list[Any]]] = {}
        for m in batch.messages:
            by_topic.setdefault(m.topic, []).append([m.partition, m.offset, m.value])
        # One stream per batch, and one topic per stream: a batch is one task.
        (topic, records), = by_topic.items()
        task_id = str(uuid.uuid4())
        result: AsyncResult[Any] | Unsent
        try:
            result = self.celery.send_task(
                self.streams[topic].task, args=[batch.stream, topic, records], task_id=task_id,
                queue=self.settings.celery_queue, serializer="msgpack")
        except CELERY_UNAVAILABLE as exc:
            result = Unsent(exc)
        self.in_flight[task_id] = InFlight(batch, result, time.monotonic(), attempts)

    def _collect_results(self) -> None:
        now = time.monotonic()
        for task_id, flight in list(self.in_flight.items()):
            try:
                state = flight.result.state
            except CELERY_UNAVAILABLE:
                state = "UNKNOWN"  # result backend unreachable: no answer yet; the timeout below still applies
            if state == "SUCCESS":
                del self.in_flight[task_id]
                self._batch_done(flight, flight.result.result or {})
            elif state in ("FAILURE", "REVOKED"):
                del self.in_flight[task_id]
                self._retry(flight, f"task {state.lower()}: {flight.result.result!r}")
            elif now - flight.sent_at > self.settings.bulk_task_timeout_seconds:
                del self.in_flight[task_id]
                self._retry(flight, f"no answer in {self.settings.bulk_task_timeout_seconds}s")

    def _batch_done(self, flight: InFlight, outcome: dict[str, int]) -> None:
        with contextlib.suppress(*CELERY_UNAVAILABLE):
            flight.result.forget()  # results also expire on their own (result_expires)
        stream = flight.batch.stream
        telemetry.BATCH_LATENCY.labels(stream).observe(time.monotonic() - flight.sent_at)
        for outcome_name, key in (("created", "created"), ("duplicate", "duplicates"), ("retried", "retried"),
                                  ("dead_lettered", "dead_lettered")):
            telemetry.ITEM_OUTCOMES.labels(stream, outcome_name).inc(int(outcome.get(key, 0)))
        telemetry.ERRORS_FORWARDED.inc(int(outcome.get("errors_forwarded", 0)))
        for tp, (first, last) in flight.batch.offset_ranges().items():
            self.offsets.done(tp, first, last)
        self.throughput.batches_done += 1
        # Items, not messages: one OTLP record holds many, each of which may be dead-lettered alone.
        self.cap.record(int(outcome.get("items", len(flight.batch.messages))), int(outcome.get("dead_lettered", 0)))

    def _retry(self, flight: InFlight, why: str) -> None:
        batch = self._only_assigned(flight.batch)
        if batch is None:
            return
        log.warning("batch of %d %s handed off again (attempt %d): %s",
                    len(batch.messages), batch.stream, flight.attempts + 1, why)
        telemetry.BATCHES_RETRIED.labels(batch.stream).inc()
        self._send(batch, flight.attempts + 1)

    def _only_assigned(self, batch: Batch) -> Batch | None:
        """Drop messages of partitions this bridge no longer owns; their new owner reads them."""
        kept = [m for m in batch.messages if (m.topic, m.partition) in self.assigned]
        if not kept:
            return None
        if len(kept) == len(batch.messages):
            return batch
        return Batch(batch.stream, kept, sum(len(m.value) for m in kept), batch.opened_at)

    # --- backpressure -------------------------------------------------------------------------------
    def _apply_backpressure(self) -> None:
        # Pause only once a whole set of batches waits behind the in-flight limit: librdkafka drops
        # what it fetched ahead when a partition is paused, so pausing at the first waiting batch
        # made every resume wait for a fresh fetch, and the workers idle meanwhile.
        full = len(self.ready) >= self.settings.bulk_max_parallel_flushes
        if full and not self.paused:
            self.consumer.pause([TopicPartition(t, p) for t, p in self.assigned])
            self.paused = True
            telemetry.BRIDGE_PAUSED.set(1)
        elif not full and self.paused:
            self.consumer.resume([TopicPartition(t, p) for t, p in self.assigned])
            self.paused = False
            telemetry.BRIDGE_PAUSED.set(0)

    # --- offsets ------------------------------------------------------------------------------------
    def _commit(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = now
        offsets = {tp: o for tp, o in self.offsets.committable().items() if tp in self.assigned}
        if not offsets:
            return
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                             asynchronous=False)
        self.offsets.mark_committed(offsets)
        telemetry.OFFSETS_COMMITTED.inc()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.add((tp.topic, tp.partition))
            self.offsets.assign((tp.topic, tp.partition), None if tp.offset == OFFSET_INVALID else tp.offset)
        if self.paused:
            consumer.pause(partitions)
        log.info("assigned %s", _names(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Still the owner during this callback: commit what is done, then forget the partitions.
        self._collect_results()
        self._commit(force=True)
        self._forget(partitions)
        log.info("revoked %s", _names(partitions))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost (session timed out): someone else may own them already, so commit nothing.
        self._forget(partitions)
        log.warning("lost %s", _names(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned -= gone
        for tp in gone:
            self.offsets.revoke(tp)
        self.batcher.drop_partitions(gone)
        self.ready = deque(b for b in (self._only_assigned(b) for b in self.ready) if b is not None)

    # --- throughput ---------------------------------------------------------------------------------
    def _report(self) -> None:
        if not self.settings.stream_throughput_enabled:
            return
        now = time.monotonic()
        if now - self._last_report < self.settings.stream_throughput_interval_seconds:
            return
        self._last_report = now
        elapsed = max(now - self.throughput.started, 1e-9)
        log.info("throughput: %.0f msg/s, %.0f KB/s, %d batches done, %d in flight, %d ready, lag %s",
                 self.throughput.messages / elapsed, self.throughput.bytes / elapsed / 1024,
                 self.throughput.batches_done, len(self.in_flight), len(self.ready), self.lag())
        self.throughput.reset()

    def lag(self) -> int:
        """Messages not yet read, summed over assigned partitions (also exported per partition).

        High watermarks are the ones librdkafka keeps from its latest fetch responses: asking the
        broker instead is one blocking round trip per partition, and that stalled this loop for
        seconds per report (0.35 s a partition on a busy broker; see bench/). While the bridge is
        paused no fetches run, so the figure then trails the broker until it resumes.
        """
        total = 0
        positions = self.consumer.position([TopicPartition(t, p) for t, p in self.assigned])
        for tp in positions:
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:  # no fetch answered yet for this partition
                continue
            lag = max(0, high - tp.offset) if tp.offset >= 0 else high
            telemetry.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
            total += lag
        return total


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def run_bridge(settings: Settings, celery: Celery) -> None:
    telemetry.serve(settings.bridge_metrics_port)
    bridge = Bridge(settings, celery)
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    bridge.run()
