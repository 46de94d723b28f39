"""Group raw Kafka messages into batches, one open batch per stream.

Pure logic: no Kafka, no Celery, and the clock is injected so tests can move time by hand.
A batch closes when it reaches ``max_count`` messages, ``max_bytes`` bytes of message values,
or ``max_age_s`` seconds since its first message. Batches of one stream are closed in the order
their messages arrived, so the offsets of a partition are handed off in increasing order, which
is what the offset tracker relies on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from typing import NamedTuple

from panopticon.flow import Records

TopicPartition = tuple[str, int]


class Message(NamedTuple):
    """One raw Kafka message, kept as bytes: decoding is the worker's job, not the bridge's. A batch keeps its
    messages as columns and gives them back as these (`Batch.messages`); `Batch.of` makes a batch of them."""

    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass(slots=True)
class Batch:
    """Messages of one stream, so of one topic, that travel together in a single ``bulk_index`` task.

    Kept as columns (partitions, offsets, values), as the hand-off carries them (`flow.Records`): the bridge
    appends three values a message instead of building an object for each, and a batch's offset ranges and
    records come from the columns in C-level passes (`Bridge._accept` in one process, on 40,000 consumed Kafka
    messages, batches of 10,000: 1.14 -> 0.79 us a message; offset ranges, records and wire format 1.08 -> 0.80).
    """

    stream: str
    topic: str
    opened_at: float  # clock() when the first message arrived; the age trigger counts from here
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    size_bytes: int = 0
    replay: bool = False  # some message may have been stored already (a re-send, or read again after a crash)
    _ranges: dict[TopicPartition, tuple[int, int]] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, stream: str, messages: Sequence[Message], opened_at: float, *, replay: bool = False) -> Batch:
        """A batch of `messages`, which are of one topic and at least one."""
        values = list(map(_VALUE, messages))
        return cls(stream, messages[0].topic, opened_at, list(map(_PARTITION, messages)), list(map(_OFFSET, messages)),
                   values, sum(map(len, values)), replay)

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def messages(self) -> list[Message]:
        """The messages, made on asking (tests, logs): the bridge itself reads the columns."""
        topic = self.topic
        return [Message(topic, p, o, v) for p, o, v in zip(self.partitions, self.offsets, self.values, strict=True)]

    def offset_ranges(self) -> dict[TopicPartition, tuple[int, int]]:
        """(topic, partition) -> (first, last) offset in this batch, for the offset tracker.

        Worked out once: the bridge asks at reservation, hand-off and confirmation, and a closed batch's
        messages do not change (a batch cut down or split is a new one). One pass in C per partition (a batch
        holds a few), not a Python step per message.
        """
        if self._ranges is None:
            partitions, offsets, ranges = self.partitions, self.offsets, {}
            for partition in dict.fromkeys(partitions):
                mine = list(compress(offsets, map(partition.__eq__, partitions)))
                ranges[(self.topic, partition)] = (min(mine), max(mine))
            self._ranges = ranges
        return self._ranges

    def records(self) -> Records:
        """The batch in the hand-off format."""
        return Records.of(self.partitions, self.offsets, self.values)

    def only(self, kept: Collection[TopicPartition]) -> Batch | None:
        """The messages of the partitions in `kept`, as a new batch; None if none, self if all."""
        mine = {partition for topic, partition in kept if topic == self.topic}
        chosen = list(map(mine.__contains__, self.partitions))
        if not any(chosen):
            return None
        if all(chosen):
            return self
        return self._sibling(list(compress(self.partitions, chosen)), list(compress(self.offsets, chosen)),
                             list(compress(self.values, chosen)), self.replay)

    def split(self, at: int, *, replay: bool) -> tuple[Batch, Batch]:
        """The first `at` messages and the rest, as two new batches."""
        return self._part(slice(None, at), replay), self._part(slice(at, None), replay)

    def _part(self, part: slice, replay: bool) -> Batch:
        return self._sibling(self.partitions[part], self.offsets[part], self.values[part], replay)

    def _sibling(self, partitions: list[int], offsets: list[int], values: list[bytes], replay: bool) -> Batch:
        """A batch of some of these messages: same stream, topic and open time."""
        return Batch(self.stream, self.topic, self.opened_at, partitions, offsets, values, sum(map(len, values)),
                     replay)


_PARTITION, _OFFSET, _VALUE = itemgetter(1), itemgetter(2), itemgetter(3)


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
        return sum(len(batch) for batch in self._open.values())

    @property
    def buffered_bytes(self) -> int:
        """Value bytes held in open batches, for back-pressure decisions."""
        return sum(batch.size_bytes for batch in self._open.values())

    def add(self, stream: str, topic: str, partition: int, offset: int, value: bytes) -> Batch | None:
        """Buffer one message of `stream` (whose topic is `topic`); return a batch if one closed because of it.

        If the message would push the open batch over ``max_bytes``, that batch closes first and
        the message starts a new one. Only one batch can be returned per call: when that new
        batch is itself already full (an oversize message, or ``max_count == 1``), it stays open
        as a full batch and ``due()`` returns it at once (``next_deadline()`` reports it as due
        now). Returning the older batch first keeps each partition's offsets in order.
        """
        size = len(value)
        # _is_full and _limit written out: this runs once per message on the bridge's hot thread.
        limit, max_count = self._bytes_by_stream.get(stream, self._max_bytes), self._max_count
        batch, closed = self._open.get(stream), None
        if batch is not None and (len(batch.offsets) >= max_count or batch.size_bytes >= limit
                                  or batch.size_bytes + size > limit):
            closed, batch = batch, None
        if batch is None:
            batch = self._open[stream] = Batch(stream, topic, self._clock())
        batch.partitions.append(partition)
        batch.offsets.append(offset)
        batch.values.append(value)
        batch.size_bytes += size
        if closed is not None:
            return closed
        if len(batch.offsets) >= max_count or batch.size_bytes >= limit:
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
            kept = batch.only({(batch.topic, p) for p in set(batch.partitions)} - partitions)
            if kept is None:
                del self._open[stream]
            else:
                self._open[stream] = kept

    def next_deadline(self, idle: bool = False) -> float | None:
        """Earliest clock time at which ``due(idle)`` returns something; None if nothing is buffered.

        The consumer uses it to choose its poll timeout; a value at or before ``clock()`` means
        "call ``due()`` now".
        """
        deadlines = [self._deadline(batch, idle) for batch in self._open.values()]
        return min(deadlines, default=None)

    def _limit(self, stream: str) -> int:
        return self._bytes_by_stream.get(stream, self._max_bytes)

    def _is_full(self, batch: Batch) -> bool:
        return len(batch) >= self._max_count or batch.size_bytes >= self._limit(batch.stream)

    def _deadline(self, batch: Batch, idle: bool = False) -> float:
        if self._is_full(batch):
            return batch.opened_at
        return batch.opened_at + (self._idle_age_s if idle else self._max_age_s)

    def _close(self, streams: list[str]) -> list[Batch]:
        closed = [self._open.pop(stream) for stream in streams]
        closed.sort(key=lambda batch: batch.opened_at)
        return closed
