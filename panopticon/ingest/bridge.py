"""The Kafka bridge: consume `apm.logs` / `apm.spans`, batch, hand batches to Celery, commit last.

The loop, in the order each step runs:
  poll -> batcher (count / bytes / age) -> hand-off queue -> Celery `bulk_index` (at most N in flight)
  -> results -> offset tracker -> commit (about once a second, only contiguous done ranges).

Nothing is committed until the task for every earlier message of that partition has succeeded.
A failed batch follows `poison.py`: sent again after a backoff while the failure is transient (the
engine or Kafka did not answer), bisected after BULK_POISON_ATTEMPTS failures of its own, and a message
that fails alone is dead-lettered with its reason, so one bad message never holds the others hostage.
A batch without an answer is sent again: after BULK_TASK_TIMEOUT_SECONDS once a worker started it,
after BULK_QUEUE_TIMEOUT_SECONDS while it waits in the queue (Redis may have lost it); the copy it
supersedes is revoked, so a slow engine does not make the queue run every batch twice. Writes are
idempotent, and a batch that may have been stored before (a re-send, or messages below the reservation
a previous owner committed; see `offsets.py`) is sent as a replay, checked by the worker against every
backing index. A commit that fails (a rebalance, a session time-out) is left to the next commit.

When as many closed batches wait as may be in flight, the bridge pauses its partitions but keeps
polling, so it stays in its group and the memory held is bounded by twice the in-flight batches
(BULK_MAX_PARALLEL_FLUSHES x BULK_BATCH_BYTES_MB each, twice) plus librdkafka's fetch queue.
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
from celery.backends.base import BaseKeyValueStoreBackend
from celery.result import AsyncResult
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from panopticon import flow, telemetry
from panopticon.exceptions import PipelineStopped
from panopticon.flow import Stream, streams_by_topic
from panopticon.ingest.batcher import Batch, Batcher
from panopticon.ingest.offsets import OffsetTracker, parse_reservation, reservation_metadata
from panopticon.ingest.poison import Step, bisect, is_transient, verdict
from panopticon.kafka import consumer_config, ensure_topics
from panopticon.settings import Settings

log = logging.getLogger(__name__)

TP = tuple[str, int]
RESULT_POLL_S = 0.02
CONSUME_BATCH = 1000  # messages taken from librdkafka's queue per step, beyond the first
UNSENT_RETRY_S = 1.0
SUPERSEDED_CHECK_S = 1.0
# A reservation covers this many batches beyond the one being handed off, so it is one commit per many.
RESERVE_AHEAD_BATCHES = 10
COMMITTED_LOOKUP_TIMEOUT_S = 10.0
RESERVATION_RETRY_S = 5.0  # a reservation commit without an answer is asked for again
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


class Waiting:
    """Stands in for the result of a batch that waits out its backoff before it is handed off again."""

    state = "WAITING"

    def __init__(self, delay_s: float) -> None:
        self.until = time.monotonic() + delay_s
        self.result: Any = None

    def forget(self) -> None:
        pass


@dataclass
class InFlight:
    batch: Batch
    result: Any  # celery AsyncResult, Unsent or Waiting
    sent_at: float
    attempts: int = 1
    failures: int = 0  # the batch's own (non-transient) failures at its current size
    started_at: float | None = None  # when a worker was seen running it
    reason: str = ""  # the last failure, for the dead letter
    give_up: bool = False  # this hand-off is the dead_letter task of a message that failed alone


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
        # Commits are asynchronous: a synchronous one waits for the group coordinator, and while a broker
        # restarts that can outlast max.poll.interval.ms, which makes the consumer leave its group.
        self.consumer = consumer or Consumer({**consumer_config(settings), "on_commit": self._on_commit})
        self.batcher = Batcher(
            max_count=settings.bulk_batch_size,
            max_bytes=int(settings.bulk_batch_bytes_mb * 1024 * 1024),
            max_age_s=settings.bulk_flush_interval_ms / 1000,
            max_bytes_by_stream={s.name: s.batch_bytes(settings) for s in self.streams.values()},
            idle_age_s=settings.bulk_idle_flush_ms / 1000,
        )
        self._stream_of = {topic: stream.name for topic, stream in self.streams.items()}
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
        # Per partition, the offset after the last message taken since it was assigned (see `_accept`).
        self._next_offset: dict[TP, int] = {}
        self._redelivered = 0
        self._last_commit = time.monotonic()
        self._last_results = 0.0
        self._last_report = time.monotonic()
        self._last_superseded_check = time.monotonic()
        self.superseded: dict[str, tuple[Any, float]] = {}  # revoked copies still watched: (result, until)
        self.committed: dict[TP, int] = {}  # the group's committed offset at assignment (for the lag)
        self._reserving: dict[TP, tuple[int, float]] = {}  # reservations asked for: (value, when)

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
        self._take(self._poll_timeout())
        self._count_consumed()
        self.ready.extend(self.batcher.due(idle=self._idle()))
        now = time.monotonic()
        if now - self._last_results >= RESULT_POLL_S or not self.in_flight:
            self._last_results = now
            self._collect_results()  # one state read per batch in flight: not more often than needed
        self._send_ready()
        self._apply_backpressure()
        self._commit(force=False)
        self._check_superseded()
        self._report()

    def _drain(self, timeout: float = 30.0) -> None:
        """Hand off nothing new; wait for what is in flight, then commit what is done."""
        deadline = time.monotonic() + timeout
        while self._running_tasks() and time.monotonic() < deadline:
            self._collect_results()
            time.sleep(RESULT_POLL_S)
        self._commit(force=True)
        if self.in_flight:
            log.warning("stopping with %d batches unconfirmed; they will be read again", len(self.in_flight))

    def _running_tasks(self) -> int:
        """Hand-offs a worker may still answer (not the ones waiting out a backoff)."""
        return sum(not isinstance(f.result, Waiting) for f in self.in_flight.values())

    # --- consuming ----------------------------------------------------------------------------------
    def _poll_timeout(self) -> float:
        if self.in_flight or self.ready:
            return RESULT_POLL_S
        deadline = self.batcher.next_deadline(idle=self._idle())
        if deadline is None:
            return 0.5
        return min(0.5, max(0.0, deadline - time.monotonic()))

    def _idle(self) -> bool:
        """Nothing handed off is unanswered: the workers wait, so a batch closes at BULK_IDLE_FLUSH_MS."""
        return not self.in_flight and not self.ready

    def _take(self, timeout: float) -> None:
        """Wait at most `timeout` for one message, then take what else has arrived without waiting.

        `consume(n, timeout)` alone waits out its whole timeout unless n messages come: at idle that was
        most of a message's time in the bridge.
        """
        first = self.consumer.poll(timeout)
        if first is None:
            return
        self._accept([first])
        self._accept(self.consumer.consume(num_messages=CONSUME_BATCH, timeout=0))

    def _accept(self, messages: list[Any]) -> None:
        """Into the batcher, in arrival order; the per-message work is kept to what it must be (hot loop)."""
        add, stream_of, ready, consumed = self.batcher.add, self._stream_of, self.ready, self._consumed
        next_offset = self._next_offset
        for message in messages:
            error = message.error()
            if error is not None:
                self._kafka_error(error)
                continue
            value = message.value() or b""
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            tp = (topic, partition)
            expected = next_offset.get(tp)
            if expected is None:
                self.offsets.seen(tp, offset)  # the first since the partition was assigned
            elif offset < expected:
                self._redelivered += 1  # in a batch already: taking it again would overlap two batches
                continue
            next_offset[tp] = offset + 1
            stream = stream_of[topic]
            counts = consumed.get(stream)
            if counts is None:
                counts = consumed[stream] = [0, 0]
            counts[0] += 1
            counts[1] += len(value)
            closed = add(stream, topic, partition, offset, value)
            if closed is not None:
                ready.append(closed)

    def _kafka_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("kafka: %s", error)

    def _count_consumed(self) -> None:
        for stream, (messages, size) in self._consumed.items():
            telemetry.MESSAGES_CONSUMED.labels(stream).inc(messages)
            telemetry.BYTES_CONSUMED.labels(stream).inc(size)
            self.throughput.messages += messages
            self.throughput.bytes += size
        self._consumed.clear()
        if self._redelivered:
            telemetry.MESSAGES_REDELIVERED.inc(self._redelivered)
            log.info("skipped %d messages the consumer delivered again (already in a batch)", self._redelivered)
            self._redelivered = 0

    # --- hand-off -----------------------------------------------------------------------------------
    def _send_ready(self) -> None:
        while self.ready and len(self.in_flight) < self.settings.bulk_max_parallel_flushes:
            batch = self.ready[0]
            if not self._reserve(batch):
                break  # Kafka did not take the reservation: nothing new is handed off until it does
            self.ready.popleft()
            for tp, (first, last) in batch.offset_ranges().items():
                self.offsets.track(tp, first, last)
                batch.replay |= self.offsets.is_replay(tp, first)
            telemetry.BATCH_MESSAGES.labels(batch.stream).observe(len(batch))
            telemetry.BATCH_AGE.labels(batch.stream).observe(max(0.0, time.monotonic() - batch.opened_at))
            self._send(InFlight(batch, None, time.monotonic()))
        telemetry.BATCHES_IN_FLIGHT.set(len(self.in_flight))

    def _reserve(self, batch: Batch) -> bool:
        """True once a committed reservation covers `batch` (see `offsets.py`); until then it is asked for.

        The commit is asynchronous and `_on_commit` records it, so the batch waits (a step or two, one
        round trip to the coordinator) without blocking the loop.
        """
        ahead = self.settings.bulk_batch_size * RESERVE_AHEAD_BATCHES
        needed = {tp: r for tp, (_, last) in batch.offset_ranges().items()
                  if tp in self.assigned and (r := self.offsets.reservation_needed(tp, last, ahead)) is not None}
        if not needed:
            return True
        now = time.monotonic()
        offsets = []
        for tp, reserved in needed.items():
            asked = self._reserving.get(tp)
            if asked is not None and asked[0] >= reserved and now - asked[1] < RESERVATION_RETRY_S:
                continue  # asked already; the answer comes through _on_commit
            point = self.offsets.safe_commit_point(tp)
            if point is None:
                continue  # cannot happen once a message of the partition was read
            offsets.append(TopicPartition(tp[0], tp[1], point, metadata=reservation_metadata(reserved)))
            self._reserving[tp] = (reserved, now)
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:
                telemetry.COMMIT_ERRORS.inc()
                log.warning("hand-off reservation not committed, holding the batch: %s", exc)
        return False

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """A commit's answer (served by consume()): record what landed, count what did not."""
        if error is not None:
            telemetry.COMMIT_ERRORS.inc()
            log.warning("commit failed, left to the next one: %s", error)
            return
        landed: dict[TP, int] = {}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if tp.error is not None:
                telemetry.COMMIT_ERRORS.inc()
                log.warning("commit of %s[%d] failed, left to the next one: %s", tp.topic, tp.partition, tp.error)
                continue
            landed[key] = tp.offset
            self.offsets.reserve(key, parse_reservation(tp.metadata))
            if self._reserving.get(key, (0, 0.0))[0] <= self.offsets.reservation(key):
                self._reserving.pop(key, None)
        self.offsets.mark_committed(landed)

    def _send(self, flight: InFlight) -> None:
        """Hand `flight` off (its batch, or the dead letter of its single message) and watch it."""
        batch = flight.batch
        # One stream per batch, and one topic per stream: a batch is one task.
        topic = batch.topic
        records = batch.records().to_wire()
        task_id = str(uuid.uuid4())
        result: AsyncResult[Any] | Unsent
        # Celery would write a repr of the records into the message's headers (for monitoring tools); the
        # summary is what such a tool can show anyway, and costs nothing to make.
        shown = f"{len(batch)} records of {topic}[{','.join(str(p) for _t, p in batch.offset_ranges())}]"
        try:
            if flight.give_up:
                result = self.celery.send_task(flow.DEAD_LETTER, args=[topic, records, flight.reason],
                                               task_id=task_id, queue=self.settings.celery_queue,
                                               serializer="msgpack", argsrepr=f"({topic!r}, <{shown}>, ...)")
            else:
                result = self.celery.send_task(
                    self.streams[topic].task, args=[batch.stream, topic, records], kwargs={"replay": batch.replay},
                    task_id=task_id, queue=self.settings.celery_queue, serializer="msgpack",
                    argsrepr=f"({batch.stream!r}, {topic!r}, <{shown}>)")
        except CELERY_UNAVAILABLE as exc:
            result = Unsent(exc)
        flight.result, flight.sent_at, flight.started_at = result, time.monotonic(), None
        self.in_flight[task_id] = flight

    def _collect_results(self) -> None:
        now = time.monotonic()
        answers = self._answers()
        for task_id, flight in list(self.in_flight.items()):
            if isinstance(flight.result, Waiting):
                if now >= flight.result.until:
                    del self.in_flight[task_id]
                    self._resend(flight)
                continue
            state, value = answers.get(task_id) or _answer_of(flight)
            if state == "STARTED" and flight.started_at is None:
                flight.started_at = now
            if state == "SUCCESS":
                del self.in_flight[task_id]
                self._batch_done(flight, value or {})
            elif state in ("FAILURE", "REVOKED"):
                del self.in_flight[task_id]
                if isinstance(flight.result, Unsent):  # the broker did not take it: not the batch's fault
                    self._failed(flight, True, f"not handed off: {value!r}")
                else:
                    self._failed(flight, *_failure_of(value, state))
            elif flight.started_at is not None and now - flight.started_at > self.settings.bulk_task_timeout_seconds:
                # Started and silent past the task's own hard limit: its worker is gone. Counts against it.
                del self.in_flight[task_id]
                self._supersede(task_id, flight)
                self._failed(flight, False, f"no answer {self.settings.bulk_task_timeout_seconds:g}s after a "
                                            "worker started it")
            elif flight.started_at is None and now - flight.sent_at > self.settings.bulk_queue_timeout_seconds:
                # Never started: lost with the broker's queue, or waiting behind a slow engine. Not its fault.
                del self.in_flight[task_id]
                self._supersede(task_id, flight)
                self._failed(flight, True, f"not started within {self.settings.bulk_queue_timeout_seconds:g}s")

    def _answers(self) -> dict[str, tuple[str, Any]]:
        """(state, result) of every batch handed off, from one read of the result backend.

        Why: reading each AsyncResult's state was one GET per batch in flight every RESULT_POLL_S: 1.3 ms of CPU a
        poll with 8 in flight, 50 polls a second, against 0.15 ms for one MGET. The keys and their decoding are the
        backend's own, so the answer is what AsyncResult.state and .result would say (no key: PENDING). An
        unreachable backend answers UNKNOWN for all of them (no answer yet: the timeouts still apply).
        """
        backend = self.celery.backend
        if not isinstance(backend, BaseKeyValueStoreBackend):  # each batch is asked alone (_answer_of)
            return {}
        handed_off = [task_id for task_id, flight in self.in_flight.items() if isinstance(flight.result, AsyncResult)]
        if not handed_off:
            return {}
        try:
            values = backend.mget([backend.get_key_for_task(task_id) for task_id in handed_off])
            answers: dict[str, tuple[str, Any]] = {}
            for task_id, value in zip(handed_off, values, strict=True):
                meta: dict[str, Any] = backend.decode_result(value) if value else {"status": "PENDING"}
                answers[task_id] = (str(meta["status"]), meta.get("result"))
        except CELERY_UNAVAILABLE:
            return {task_id: ("UNKNOWN", None) for task_id in handed_off}
        return answers

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
        if flight.give_up:
            telemetry.MESSAGES_GIVEN_UP.labels(stream).inc(len(flight.batch))
        # Items, not messages: one OTLP record holds many, each of which may be dead-lettered alone.
        self.cap.record(int(outcome.get("items", len(flight.batch))), int(outcome.get("dead_lettered", 0)))

    def _failed(self, flight: InFlight, transient: bool, reason: str) -> None:
        """Send the batch again, bisect it, or give its one message up (see `poison.py`)."""
        batch = self._only_assigned(flight.batch)
        if batch is None:
            return
        if batch is not flight.batch:
            flight = InFlight(batch, None, flight.sent_at, flight.attempts, flight.failures, None, flight.reason,
                              flight.give_up)
        failures = flight.failures + (0 if transient else 1)
        step = verdict(transient=transient or flight.give_up, failures=failures, attempts=flight.attempts,
                       size=len(batch), max_failures=self.settings.bulk_poison_attempts)
        log.warning("%s of %d %s failed (attempt %d, %s): %s; %s", "dead letter" if flight.give_up else "batch",
                    len(batch), batch.stream, flight.attempts,
                    "transient" if transient else f"failure {failures}", reason[:300], step.step.value)
        telemetry.BATCHES_RETRIED.labels(batch.stream).inc()
        if step.step is Step.BISECT:
            self._bisect(batch, reason)
            return
        batch.replay = True  # some of it may be stored already
        following = InFlight(batch, Waiting(step.delay_s), time.monotonic(), flight.attempts + 1,
                             0 if step.step is Step.DEAD_LETTER else failures, None, reason,
                             flight.give_up or step.step is Step.DEAD_LETTER)
        self.in_flight[f"waiting-{uuid.uuid4()}"] = following

    def _bisect(self, batch: Batch, reason: str) -> None:
        """Split the batch in two, in its place in the tracker; the halves go first, fresh."""
        first, second = bisect(batch)
        whole, left, right = batch.offset_ranges(), first.offset_ranges(), second.offset_ranges()
        for tp, span in whole.items():
            self.offsets.split(tp, span, [r for r in (left.get(tp), right.get(tp)) if r is not None])
        telemetry.BATCHES_BISECTED.labels(batch.stream).inc()
        for half in (first, second):
            self.in_flight[f"waiting-{uuid.uuid4()}"] = InFlight(half, Waiting(0.0), time.monotonic(), reason=reason)

    def _resend(self, flight: InFlight) -> None:
        batch = self._only_assigned(flight.batch)
        if batch is not None:
            flight.batch = batch
            self._send(flight)

    def _supersede(self, task_id: str, flight: InFlight) -> None:
        """Revoke a copy that is being replaced, and watch it: if it runs anyway, that is a duplicate execution."""
        if isinstance(flight.result, Unsent | Waiting):
            return
        with contextlib.suppress(*CELERY_UNAVAILABLE):
            self.celery.control.revoke(task_id)
        self.superseded[task_id] = (flight.result, time.monotonic() + 2 * self.settings.bulk_queue_timeout_seconds)

    def _check_superseded(self) -> None:
        now = time.monotonic()
        if not self.superseded or now - self._last_superseded_check < SUPERSEDED_CHECK_S:
            return
        self._last_superseded_check = now
        for task_id, (result, until) in list(self.superseded.items()):
            try:
                state = result.state
            except CELERY_UNAVAILABLE:
                continue
            if state == "SUCCESS":
                telemetry.DUPLICATE_EXECUTIONS.inc()
                log.info("a superseded copy of a batch ran anyway (task %s); its writes were idempotent", task_id)
            if state in ("SUCCESS", "FAILURE", "REVOKED") or now > until:
                del self.superseded[task_id]

    def _only_assigned(self, batch: Batch) -> Batch | None:
        """Drop messages of partitions this bridge no longer owns; their new owner reads them."""
        return batch.only(self.assigned)

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
        """Commit what is stored. Asynchronous in the loop (see __init__); synchronous when the partitions are
        about to be given up (`force`: revoke, shutdown), where the commit must land before they go."""
        now = time.monotonic()
        if not force and now - self._last_commit < self.settings.bridge_commit_interval_seconds:
            return
        self._last_commit = now
        offsets = {tp: o for tp, o in self.offsets.committable().items() if tp in self.assigned}
        if not offsets:
            return
        partitions = [TopicPartition(t, p, o, metadata=reservation_metadata(self.offsets.reservation((t, p))))
                      for (t, p), o in offsets.items()]
        try:
            if force:
                self._on_commit(None, self.consumer.commit(offsets=partitions, asynchronous=False) or [])
            else:
                self.consumer.commit(offsets=partitions, asynchronous=True)
        except KafkaException as exc:
            # REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID...: the tracker keeps the points,
            # the next commit offers them again (or the next owner replays from the last one that landed).
            telemetry.COMMIT_ERRORS.inc()
            log.warning("commit failed, left to the next one: %s", exc)
            return
        telemetry.OFFSETS_COMMITTED.inc()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = self._committed_of(consumer, partitions)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            offset, replay_below = committed.get(key, (None, 0))
            self.assigned.add(key)
            self._next_offset.pop(key, None)
            # Reading may not resume at `offset` (a topic recreated, retention passed it): the tracker starts
            # from the first offset read instead.
            self.offsets.assign(key, None, replay_below)
            if offset is not None:
                self.committed[key] = offset
        if self.paused:
            consumer.pause(partitions)
        log.info("assigned %s", _names(partitions))

    def _committed_of(self, consumer: Consumer, partitions: list[TopicPartition]) -> dict[TP, tuple[int | None, int]]:
        """Per partition: the committed offset (None: none yet) and the reservation its last owner left.

        When Kafka cannot say, every message read is treated as a possible replay: slower (the worker
        checks each batch's ids), never a duplicate.
        """
        try:
            found = consumer.committed(partitions, timeout=COMMITTED_LOOKUP_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("committed offsets not readable (%s): every batch is sent as a possible replay", exc)
            return {(tp.topic, tp.partition): (None, 2**62) for tp in partitions}
        out: dict[TP, tuple[int | None, int]] = {}
        for tp in found:
            offset = tp.offset if tp.offset >= 0 else None
            out[(tp.topic, tp.partition)] = (offset, parse_reservation(tp.metadata))
        return out

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
            self._next_offset.pop(tp, None)
            self.committed.pop(tp, None)
            self._reserving.pop(tp, None)
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
            # Before the first fetch the position is unknown: reading resumes at the committed offset.
            position = tp.offset if tp.offset >= 0 else self.committed.get((tp.topic, tp.partition))
            if position is None:
                continue
            lag = max(0, high - position)
            telemetry.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
            total += lag
        return total


def _answer_of(flight: InFlight) -> tuple[str, Any]:
    """(state, result) of one batch, asked alone: an Unsent one, or any with a backend that is no key-value store."""
    try:
        return flight.result.state, flight.result.result
    except CELERY_UNAVAILABLE:
        return "UNKNOWN", None  # result backend unreachable: no answer yet; the timeouts still apply


def _failure_of(error: Any, state: str) -> tuple[bool, str]:
    """(transient, reason) of a failed task's exception (Celery rebuilds ours by class name)."""
    if state == "REVOKED":
        return True, "revoked"
    name = getattr(error, "exc_cls_name", None) or type(error).__name__
    return is_transient(name), f"{name}: {error}"


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def run_bridge(settings: Settings, celery: Celery) -> None:
    telemetry.serve(settings.bridge_metrics_port, settings.metrics_bind_host, settings.api_auth_tokens, "bridge")
    bridge = Bridge(settings, celery)
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    bridge.run()
