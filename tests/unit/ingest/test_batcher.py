"""Batcher behaviour as labelled scenarios driven by a fake clock.

Each scenario is a list of steps; the outcome is every batch that came out, in order, written as
(stream, offsets). Offsets are unique per scenario so they identify messages.
"""

from __future__ import annotations

import pytest

from panopticon.ingest.batcher import Batch, Batcher, Message


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def msg(offset: int, size: int = 10, topic: str = "apm.logs", partition: int = 0) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, value=b"x" * size)


def add(offset: int, size: int = 10, stream: str = "logs", partition: int = 0) -> tuple:
    topic = "apm.logs" if stream == "logs" else "apm.spans"
    return ("add", stream, msg(offset, size, topic, partition))


def tick(seconds: float) -> tuple:
    return ("tick", seconds)


DUE = ("due",)
FLUSH = ("flush",)


def drop(*partitions: tuple[str, int]) -> tuple:
    return ("drop", set(partitions))


def run(batcher: Batcher, clock: FakeClock, steps: list[tuple]) -> list[tuple[str, list[int]]]:
    """Play the steps; return the batches that came out, in order."""
    out: list[Batch] = []
    for step in steps:
        kind = step[0]
        if kind == "add":
            closed = batcher.add(step[1], *step[2])
            if closed is not None:
                out.append(closed)
        elif kind == "tick":
            clock.now += step[1]
        elif kind == "due":
            out.extend(batcher.due())
        elif kind == "flush":
            out.extend(batcher.flush_all())
        elif kind == "drop":
            batcher.drop_partitions(step[1])
    return [(batch.stream, [m.offset for m in batch.messages]) for batch in out]


LIMITS = {"max_count": 3, "max_bytes": 100, "max_age_s": 5.0}

SCENARIOS = [
    pytest.param([add(1), add(2)], [], id="under-all-limits-nothing-closes"),
    pytest.param([add(1), add(2), add(3)], [("logs", [1, 2, 3])], id="count-trigger-closes-on-third"),
    pytest.param(
        [add(1), add(2), add(3), add(4)],
        [("logs", [1, 2, 3])],
        id="count-trigger-next-message-opens-new-batch",
    ),
    pytest.param([add(1, 60), add(2, 40)], [("logs", [1, 2])], id="bytes-exactly-at-limit-closes"),
    pytest.param(
        [add(1, 60), add(2, 50)],
        [("logs", [1])],
        id="bytes-would-overflow-closes-previous-first",
    ),
    pytest.param(
        [add(1, 60), add(2, 50), FLUSH],
        [("logs", [1]), ("logs", [2])],
        id="bytes-overflowing-message-starts-next-batch",
    ),
    pytest.param([add(1, 500)], [("logs", [1])], id="oversize-alone-is-its-own-batch"),
    pytest.param(
        [add(1, 10), add(2, 500)],
        [("logs", [1])],
        id="oversize-after-open-batch-returns-older-first",
    ),
    pytest.param(
        [add(1, 10), add(2, 500), DUE],
        [("logs", [1]), ("logs", [2])],
        id="oversize-after-open-batch-is-due-at-once",
    ),
    pytest.param(
        [add(1, 10), add(2, 500), add(3, 10)],
        [("logs", [1]), ("logs", [2])],
        id="oversize-left-open-closes-on-next-add",
    ),
    pytest.param([add(1), tick(4.9), DUE], [], id="age-trigger-not-yet"),
    pytest.param([add(1), tick(5.0), DUE], [("logs", [1])], id="age-trigger-at-exactly-max-age"),
    pytest.param(
        [add(1), tick(3), add(2), tick(2), DUE],
        [("logs", [1, 2])],
        id="age-counts-from-first-message",
    ),
    pytest.param([add(1), tick(5), DUE, DUE], [("logs", [1])], id="due-removes-what-it-returns"),
    pytest.param(
        [add(1, stream="logs"), add(2, stream="spans"), add(3, stream="logs"), add(4, stream="logs")],
        [("logs", [1, 3, 4])],
        id="streams-count-independently",
    ),
    pytest.param(
        [add(1, 60, stream="logs"), add(2, 60, stream="spans")],
        [],
        id="streams-bytes-independent",
    ),
    pytest.param(
        [add(1, stream="logs"), tick(3), add(2, stream="spans"), tick(2), DUE],
        [("logs", [1])],
        id="streams-age-independent",
    ),
    pytest.param(
        [add(1, stream="spans"), tick(1), add(2, stream="logs"), tick(9), DUE],
        [("spans", [1]), ("logs", [2])],
        id="due-returns-oldest-first",
    ),
    pytest.param(
        [add(1, stream="logs"), add(2, stream="spans"), FLUSH],
        [("logs", [1]), ("spans", [2])],
        id="flush-all-closes-every-stream",
    ),
    pytest.param([FLUSH], [], id="flush-all-when-empty"),
    pytest.param([add(1), FLUSH, FLUSH], [("logs", [1])], id="flush-all-empties-buffer"),
    pytest.param(
        [add(1, partition=0), add(2, partition=1), drop(("apm.logs", 0)), FLUSH],
        [("logs", [2])],
        id="drop-partitions-keeps-others",
    ),
    pytest.param(
        [add(1, partition=0), drop(("apm.logs", 0)), tick(10), DUE],
        [],
        id="drop-partitions-removes-emptied-batch",
    ),
    pytest.param(
        [add(1, partition=0), add(2, partition=1), drop(("apm.logs", 0)), add(3), add(4)],
        [("logs", [2, 3, 4])],
        id="drop-partitions-frees-count-room",
    ),
    pytest.param(
        [add(1, partition=0), add(2, stream="spans"), drop(("apm.logs", 0)), FLUSH],
        [("spans", [2])],
        id="drop-partitions-leaves-other-topic",
    ),
]


@pytest.mark.parametrize(("steps", "expected"), SCENARIOS)
def test_batches_out(steps: list[tuple], expected: list[tuple[str, list[int]]]) -> None:
    clock = FakeClock()
    batcher = Batcher(**LIMITS, clock=clock)
    assert run(batcher, clock, steps) == expected


DEADLINES = [
    pytest.param([], None, id="empty-has-no-deadline"),
    pytest.param([add(1)], 1005.0, id="open-batch-deadline-is-opened-plus-age"),
    pytest.param([add(1), tick(2), add(2)], 1005.0, id="later-messages-do-not-extend"),
    pytest.param(
        [add(1, stream="spans"), tick(2), add(2, stream="logs")],
        1005.0,
        id="earliest-stream-wins",
    ),
    pytest.param([add(1), add(2), add(3)], None, id="closed-batch-leaves-no-deadline"),
    pytest.param([add(1), tick(1), add(2, 500)], 1001.0, id="full-batch-left-open-is-due-now"),
    pytest.param([add(1), tick(6), DUE], None, id="after-due-no-deadline"),
    pytest.param([add(1), drop(("apm.logs", 0))], None, id="after-drop-no-deadline"),
]


@pytest.mark.parametrize(("steps", "expected"), DEADLINES)
def test_next_deadline(steps: list[tuple], expected: float | None) -> None:
    clock = FakeClock(now=1000.0)
    batcher = Batcher(**LIMITS, clock=clock)
    run(batcher, clock, steps)
    assert batcher.next_deadline() == expected


def test_due_returns_something_exactly_at_next_deadline() -> None:
    clock = FakeClock()
    batcher = Batcher(**LIMITS, clock=clock)
    batcher.add("logs", *msg(1))
    deadline = batcher.next_deadline()
    assert deadline is not None
    clock.now = deadline - 0.001
    assert batcher.due() == []
    clock.now = deadline
    assert len(batcher.due()) == 1


BUFFERED = [
    pytest.param([], 0, 0, id="empty"),
    pytest.param([add(1, 10), add(2, 20, stream="spans")], 2, 30, id="sums-over-streams"),
    pytest.param([add(1, 10), add(2, 20), add(3, 30)], 0, 0, id="closed-batch-not-buffered"),
    pytest.param(
        [add(1, 10, partition=0), add(2, 20, partition=1), drop(("apm.logs", 1))],
        1,
        10,
        id="drop-updates-bytes",
    ),
]


@pytest.mark.parametrize(("steps", "count", "size"), BUFFERED)
def test_buffered(steps: list[tuple], count: int, size: int) -> None:
    clock = FakeClock()
    batcher = Batcher(**LIMITS, clock=clock)
    run(batcher, clock, steps)
    assert (batcher.buffered_count, batcher.buffered_bytes) == (count, size)


def test_batch_records_size_and_open_time() -> None:
    clock = FakeClock(now=50.0)
    batcher = Batcher(**LIMITS, clock=clock)
    batcher.add("logs", *msg(1, 10))
    clock.now = 51.0
    batcher.add("logs", *msg(2, 20))
    clock.now = 52.0
    batch = batcher.add("logs", *msg(3, 30))
    assert batch is not None
    assert (batch.stream, batch.size_bytes, batch.opened_at) == ("logs", 60, 50.0)


def test_offset_ranges_per_partition() -> None:
    batch = Batch.of("logs", [msg(5, partition=0), msg(9, partition=1), msg(7, partition=0), msg(10, partition=1)],
                     opened_at=0.0)
    assert batch.size_bytes == 40 and len(batch) == 4
    assert batch.offset_ranges() == {("apm.logs", 0): (5, 7), ("apm.logs", 1): (9, 10)}


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"max_count": 0, "max_bytes": 1, "max_age_s": 1.0}, id="zero-count"),
        pytest.param({"max_count": 1, "max_bytes": 0, "max_age_s": 1.0}, id="zero-bytes"),
        pytest.param({"max_count": 1, "max_bytes": 1, "max_age_s": -1.0}, id="negative-age"),
    ],
)
def test_rejects_bad_limits(limits: dict) -> None:
    with pytest.raises(ValueError):
        Batcher(**limits)


def test_a_stream_with_its_own_byte_limit_closes_on_it() -> None:
    """OTLP records are whole export requests: their streams close batches on a smaller byte limit."""
    batcher = Batcher(max_count=100, max_bytes=1000, max_age_s=60, max_bytes_by_stream={"otlp_spans": 250},
                      clock=FakeClock())
    closed = [batcher.add("otlp_spans", *msg(n, 100, "otlp_spans")) for n in range(4)]
    assert [None if b is None else [m.offset for m in b.messages] for b in closed] == [None, None, [0, 1], None]
    others = [batcher.add("spans", *msg(10 + n, 100, "apm.spans")) for n in range(9)]
    assert others == [None] * 9, "other streams keep max_bytes"
    with pytest.raises(ValueError, match="max_bytes_by_stream"):
        Batcher(max_count=1, max_bytes=1, max_age_s=0, max_bytes_by_stream={"x": 0})


def test_a_batch_cut_to_some_partitions_keeps_their_messages_in_order() -> None:
    """What the bridge hands off again after a rebalance: only the partitions it still owns."""
    batch = Batch.of("logs", [msg(5, 1, partition=0), msg(9, 2, partition=1), msg(7, 3, partition=0),
                              msg(10, 4, partition=2)], opened_at=3.0, replay=True)
    kept = batch.only({("apm.logs", 0), ("apm.logs", 2), ("apm.spans", 1)})  # another topic's 1 is not ours
    assert kept is not None and kept is not batch
    assert [(m.partition, m.offset) for m in kept.messages] == [(0, 5), (0, 7), (2, 10)]
    assert (kept.size_bytes, kept.opened_at, kept.replay, kept.topic) == (8, 3.0, True, "apm.logs")
    assert kept.offset_ranges() == {("apm.logs", 0): (5, 7), ("apm.logs", 2): (10, 10)}
    assert batch.only({("apm.logs", p) for p in (0, 1, 2, 3)}) is batch
    assert batch.only({("apm.logs", 3)}) is None
