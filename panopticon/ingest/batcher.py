"""Group raw Kafka messages into batches, one open batch per stream.

Pure logic: no Kafka, no Celery, and the clock is injected so tests can move time by hand.
A batch closes when it reaches ``max_count`` messages, ``max_bytes`` bytes of message values,
or ``max_age_s`` seconds since its first message. Batches of one stream are closed in the order
their messages arrived, so the offsets of a partition are handed off in increasing order, which
is what the offset tracker relies on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from typing import NamedTuple

from panopticon.flow import Records

TopicPartition = tuple[str, int]


class Message(NamedTuple):
    """One raw Kafka message, kept as bytes: decoding is the worker's job, not the bridge's.

    A tuple rather than a dataclass: the bridge makes one per message, and a frozen dataclass costs three
    times as much to build.
    """

    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass(slots=True)
class Batch:
    """Messages of one stream that travel together in a single ``bulk_index`` task."""

    stream: str
    messages: list[Message]
    size_bytes: int
    opened_at: float  # clock() when the first message arrived; the age trigger counts from here
    replay: bool = False  # some message may have been stored already (a re-send, or read again after a crash)
    _ranges: dict[TopicPartition, tuple[int, int]] | None = field(default=None, repr=False)

    def offset_ranges(self) -> dict[TopicPartition, tuple[int, int]]:
        """(topic, partition) -> (first, last) offset in this batch, for the offset tracker.

        Worked out once: the bridge asks at reservation, hand-off and confirmation, and a closed batch's
        messages do not change (a batch cut down or split is a new one).
        """
        if self._ranges is None:
            self._ranges = _ranges(self.messages)
        return self._ranges

    def records(self) -> Records:
        """The batch in the hand-off format."""
        messages = self.messages
        return Records.of(list(map(_PARTITION, messages)), list(map(_OFFSET, messages)), list(map(_VALUE, messages)))


_PARTITION, _OFFSET, _VALUE = itemgetter(1), itemgetter(2), itemgetter(3)
_TOPIC_PARTITION = itemgetter(0, 1)


def _ranges(messages: list[Message]) -> dict[TopicPartition, tuple[int, int]]:
    """Each partition's lowest and highest offset; one pass in C per partition (a batch holds a few), not a
    Python step per message: this ran once per batch on the bridge's hot thread."""
    keys = list(map(_TOPIC_PARTITION, messages))
    offsets = list(map(_OFFSET, messages))
    out = {}
    for tp in dict.fromkeys(keys):
        mine = list(compress(offsets, map(tp.__eq__, keys)))
        out[tp] = (min(mine), max(mine))
    return out


class Batcher:
    """One open batch per stream; closes it on count, bytes or age.

    Size is measured as ``len(message.value)``: it is what the worker sends to the index,
    and keys/headers are not forwarded.
    """

    def __init__(
        self,
        *,
        max_count: int,
        max_bytes: int,
        max_age_s: float,
        max_bytes_by_stream: dict[str, int] | None = None,
        idle_age_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`max_bytes_by_stream` overrides `max_bytes` for some streams (an OTLP record holds a whole export
        request, so its batches are sized by bytes rather than by message count). `idle_age_s` is the age at
        which a batch closes when nothing is in flight: the workers are waiting then, and every message
        would only wait out the timer (an error log on its way to a screen among them)."""
        if max_count < 1:
            raise ValueError("max_count must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if max_age_s < 0:
            raise ValueError("max_age_s must not be negative")
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._bytes_by_stream = dict(max_bytes_by_stream or {})
        if any(limit < 1 for limit in self._bytes_by_stream.values()):
            raise ValueError("max_bytes_by_stream values must be at least 1")
        self._max_age_s = max_age_s
        self._idle_age_s = max_age_s if idle_age_s is None else min(idle_age_s, max_age_s)
        self._clock = clock
        self._open: dict[str, Batch] = {}

    @property
    def buffered_count(self) -> int:
        """Messages held in open batches (not yet handed off)."""
        return sum(len(batch.messages) for batch in self._open.values())

    @property
    def buffered_bytes(self) -> int:
        """Value bytes held in open batches, for back-pressure decisions."""
        return sum(batch.size_bytes for batch in self._open.values())

    def add(self, stream: str, message: Message) -> Batch | None:
        """Buffer ``message``; return a batch if one closed because of it.

        If the message would push the open batch over ``max_bytes``, that batch closes first and
        the message starts a new one. Only one batch can be returned per call: when that new
        batch is itself already full (an oversize message, or ``max_count == 1``), it stays open
        as a full batch and ``due()`` returns it at once (``next_deadline()`` reports it as due
        now). Returning the older batch first keeps each partition's offsets in order.
        """
        size = len(message.value)
        # _is_full and _limit written out: this runs once per message on the bridge's hot thread.
        limit, max_count = self._bytes_by_stream.get(stream, self._max_bytes), self._max_count
        batch = self._open.get(stream)
        if batch is None:
            batch = self._open[stream] = Batch(stream=stream, messages=[], size_bytes=0, opened_at=self._clock())
        elif len(batch.messages) >= max_count or batch.size_bytes >= limit or batch.size_bytes + size > limit:
            closed = self._open.pop(stream)
            self._append(stream, message, size)
            return closed
        batch.messages.append(message)
        batch.size_bytes += size
        if len(batch.messages) >= max_count or batch.size_bytes >= limit:
            return self._open.pop(stream)
        return None

    def due(self, idle: bool = False) -> list[Batch]:
        """Close and return batches that are old enough, or full but not yet returned; `idle`: nothing is in
        flight, so the idle age applies."""
        now = self._clock()
        age = self._idle_age_s if idle else self._max_age_s
        ready = [
            stream
            for stream, batch in self._open.items()
            if self._is_full(batch) or now - batch.opened_at >= age
        ]
        return self._close(ready)

    def flush_all(self) -> list[Batch]:
        """Close every open batch, oldest first (shutdown, or before giving up partitions)."""
        return self._close(list(self._open))

    def drop_partitions(self, partitions: set[TopicPartition]) -> None:
        """Forget buffered messages of revoked partitions: their new owner will read them again.

        A batch keeps its ``opened_at`` even if its first message was dropped, so it may close a
        little early; that is harmless, whereas holding messages too long is not.
        """
        for stream, batch in list(self._open.items()):
            kept = [m for m in batch.messages if (m.topic, m.partition) not in partitions]
            if not kept:
                del self._open[stream]
                continue
            batch.messages = kept
            batch.size_bytes = sum(len(m.value) for m in kept)
            batch._ranges = None

    def next_deadline(self, idle: bool = False) -> float | None:
        """Earliest clock time at which ``due(idle)`` returns something; None if nothing is buffered.

        The consumer uses it to choose its poll timeout; a value at or before ``clock()`` means
        "call ``due()`` now".
        """
        deadlines = [self._deadline(batch, idle) for batch in self._open.values()]
        return min(deadlines, default=None)

    def _append(self, stream: str, message: Message, size: int) -> Batch:
        batch = self._open.get(stream)
        if batch is None:
            batch = Batch(stream=stream, messages=[], size_bytes=0, opened_at=self._clock())
            self._open[stream] = batch
        batch.messages.append(message)
        batch.size_bytes += size
        return batch

    def _limit(self, stream: str) -> int:
        return self._bytes_by_stream.get(stream, self._max_bytes)

    def _is_full(self, batch: Batch) -> bool:
        return len(batch.messages) >= self._max_count or batch.size_bytes >= self._limit(batch.stream)

    def _deadline(self, batch: Batch, idle: bool = False) -> float:
        if self._is_full(batch):
            return batch.opened_at
        return batch.opened_at + (self._idle_age_s if idle else self._max_age_s)

    def _close(self, streams: list[str]) -> list[Batch]:
        closed = [self._open.pop(stream) for stream in streams]
        closed.sort(key=lambda batch: batch.opened_at)
        return closed
