"""What the bridge does with a batch whose task failed: send it again, split it, or give one message up.

Pure logic, tested with tables (tests/unit/ingest/test_poison.py). A failure is *transient* when the task
said so (the engine or Kafka did not answer: EngineUnavailable, KafkaUnavailable): the batch is sent again
after a backoff, however often, since the data is good and the outage will end. Any other failure, a
task killed at its time limit included, counts against the batch: after BULK_POISON_ATTEMPTS the batch is
bisected, and the halves are tried on their own, until the message that fails stands alone; that message
is dead-lettered with the last reason. Everything else in the batch is stored and committed, so no
partition's commit point waits on one bad message for more than

    BULK_POISON_ATTEMPTS x (BULK_TASK_TIMEOUT_SECONDS + the backoff) x (1 + log2(BULK_BATCH_SIZE))

(the attempts at each size, for each halving down to one message).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from panopticon.ingest.batcher import Batch

# The exceptions a task raises when the failure is not the batch's fault (panopticon/exceptions.py).
TRANSIENT_ERRORS = frozenset({"EngineUnavailable", "PartialAnswer", "KafkaUnavailable", "QueryTimeout"})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


class Step(Enum):
    RESEND = "resend"
    BISECT = "bisect"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Verdict:
    step: Step
    delay_s: float  # how long to wait before the next hand-off


def is_transient(error_type: str) -> bool:
    return error_type in TRANSIENT_ERRORS


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential with full jitter, capped: many batches failing at once do not retry in step."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def verdict(*, transient: bool, failures: int, attempts: int, size: int, max_failures: int,
            rng: random.Random | None = None) -> Verdict:
    """The next step for a batch of `size` messages after a failure.

    `failures` counts the batch's own (non-transient) failures, this one included; `attempts` every
    hand-off of it so far.
    """
    delay = backoff(attempts, rng)
    if transient or failures < max_failures:
        return Verdict(Step.RESEND, delay)
    return Verdict(Step.BISECT if size > 1 else Step.DEAD_LETTER, 0.0 if size > 1 else delay)


def bisect(batch: Batch) -> tuple[Batch, Batch]:
    """Two halves in message order, so each partition's offsets stay in order across them."""
    return batch.split(len(batch) // 2, replay=True)
