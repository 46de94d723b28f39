"""What the bridge does after a failed batch: send again, bisect, or give one message up (pure)."""

from __future__ import annotations

import random

import pytest

from panopticon.ingest.batcher import Batch, Message
from panopticon.ingest.poison import BACKOFF_CAP_S, Step, backoff, bisect, is_transient, verdict


@pytest.mark.parametrize(
    ("label", "transient", "failures", "size", "step"),
    [
        ("an outage is never the batch's fault: send again", True, 0, 5000, Step.RESEND),
        ("...however long it lasts", True, 99, 1, Step.RESEND),
        ("a first failure of its own: send again", False, 1, 5000, Step.RESEND),
        ("second: still again", False, 2, 5000, Step.RESEND),
        ("third: split it", False, 3, 5000, Step.BISECT),
        ("a pair that fails: split it too", False, 3, 2, Step.BISECT),
        ("one message that fails three times: give it up", False, 3, 1, Step.DEAD_LETTER),
        ("one message, failing twice: one more try", False, 2, 1, Step.RESEND),
    ],
)
def test_verdict(label: str, transient: bool, failures: int, size: int, step: Step) -> None:
    got = verdict(transient=transient, failures=failures, attempts=failures + 1, size=size, max_failures=3,
                  rng=random.Random(1))
    assert got.step is step, label
    if step is Step.BISECT:
        assert got.delay_s == 0  # the halves go at once: the failure was the batch's, not the system's


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(3)
    first, later, much_later = backoff(1, rng), backoff(5, rng), backoff(50, rng)
    assert 0 < first <= 0.5 < later <= 8 and BACKOFF_CAP_S / 2 <= much_later <= BACKOFF_CAP_S


def test_transient_errors_are_the_outages() -> None:
    assert all(is_transient(name) for name in ("EngineUnavailable", "PartialAnswer", "KafkaUnavailable"))
    assert not any(is_transient(name) for name in ("EngineRejected", "KafkaRejected", "TimeLimitExceeded",
                                                    "WorkerLostError", "TypeError"))


def _batch(offsets: list[tuple[int, int]]) -> Batch:
    messages = [Message("apm.logs", partition, offset, b"x" * (offset + 1)) for partition, offset in offsets]
    return Batch.of("logs", messages, opened_at=1.0)


def test_bisect_keeps_each_partitions_offsets_in_order() -> None:
    batch = _batch([(0, 10), (1, 3), (0, 11), (1, 4), (0, 12)])
    first, second = bisect(batch)
    assert [m.offset for m in first.messages] == [10, 3] and [m.offset for m in second.messages] == [11, 4, 12]
    assert first.offset_ranges() == {("apm.logs", 0): (10, 10), ("apm.logs", 1): (3, 3)}
    assert second.offset_ranges() == {("apm.logs", 0): (11, 12), ("apm.logs", 1): (4, 4)}
    assert first.replay and second.replay  # a half may have been stored by an earlier attempt
    assert first.size_bytes + second.size_bytes == batch.size_bytes


def test_repeated_bisection_isolates_one_message_in_log2_steps() -> None:
    batch = _batch([(0, offset) for offset in range(1000)])
    poison, steps = 617, 0
    while len(batch.messages) > 1:
        first, second = bisect(batch)
        batch = first if any(m.offset == poison for m in first.messages) else second
        steps += 1
    assert batch.messages[0].offset == poison and steps == 10
