"""Decide which Kafka offsets are safe to commit.

Batches are stored by workers that finish in any order, but a Kafka commit says "everything
before this offset is stored". So the commit point of a partition only moves over a range once
that range and every range handed off before it are done. Offsets may have gaps (compaction,
transaction markers), so the partition is seen as the sequence of tracked ranges, not as a
sequence of integers.

Pure logic: no Kafka client here; the consumer feeds it and performs the commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TopicPartition = tuple[str, int]
Range = tuple[int, int]


@dataclass(slots=True)
class _PartitionState:
    """Ranges in hand-off order (dicts keep insertion order), each mapped to "done"."""

    point: int | None  # next offset to commit: everything below is stored, or was already committed
    committed: int | None  # last offset given to mark_committed (or the start position)
    highest: int | None = None  # largest offset ever tracked, to refuse out-of-order hand-offs
    ranges: dict[Range, bool] = field(default_factory=dict)


class OffsetTracker:
    """Per partition: which offsets were handed off, which are done; the commit point is the end of the
    contiguous done prefix."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionState] = {}

    def assign(self, tp: TopicPartition, next_offset: int | None = None) -> None:
        """Start afresh for ``tp``; ``next_offset`` is where reading resumes (its committed offset).

        Knowing it means nothing is reported until real progress is made. Assigning a partition
        that is already assigned drops its old state, like a revoke followed by an assign.
        """
        highest = None if next_offset is None else next_offset - 1
        self._partitions[tp] = _PartitionState(point=next_offset, committed=next_offset, highest=highest)

    def revoke(self, tp: TopicPartition) -> None:
        """Forget ``tp``: another consumer owns it now, and committing for it would be wrong."""
        self._partitions.pop(tp, None)

    def track(self, tp: TopicPartition, first: int, last: int) -> None:
        """Record that offsets ``first..last`` of ``tp`` were handed off and are in flight.

        Re-tracking a range that is already tracked (a retry) keeps its place and its state, and
        a range entirely below the commit point is already stored, so both are no-ops. Ignored
        for partitions not assigned (a batch closed just before a revoke). Raises ValueError if
        the range overlaps or precedes what was tracked before: that would break the ordering
        the commit point depends on.
        """
        if first > last:
            raise ValueError(f"empty range {first}..{last}")
        state = self._partitions.get(tp)
        if state is None or (first, last) in state.ranges:
            return
        if state.point is not None and last < state.point:
            return
        if state.highest is not None and first <= state.highest:
            raise ValueError(f"range {first}..{last} of {tp} overlaps or precedes offset {state.highest}")
        state.ranges[(first, last)] = False
        state.highest = last

    def done(self, tp: TopicPartition, first: int, last: int) -> None:
        """Record that range ``first..last`` of ``tp`` is stored.

        Must name a range exactly as tracked. Ignored for partitions no longer assigned and for
        ranges not tracked (a late duplicate of a retried batch, or a task from before a
        reassignment): the data is stored either way, and only tracked ranges move the commit.
        """
        state = self._partitions.get(tp)
        if state is None or (first, last) not in state.ranges:
            return
        state.ranges[(first, last)] = True
        _advance(state)

    def committable(self) -> dict[TopicPartition, int]:
        """tp -> offset to commit, only where the commit point moved since the last commit.

        Does not change anything: call ``mark_committed`` once the commit succeeded, so a failed
        commit is simply offered again.
        """
        return {
            tp: state.point
            for tp, state in self._partitions.items()
            if state.point is not None and (state.committed is None or state.point > state.committed)
        }

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Record successful commits. An older offset than one already recorded is ignored, so
        commit callbacks arriving out of order cannot make a partition look behind."""
        for tp, offset in offsets.items():
            state = self._partitions.get(tp)
            if state is None:
                continue
            if state.committed is None or offset > state.committed:
                state.committed = offset


def _advance(state: _PartitionState) -> None:
    """Move the commit point over the done ranges at the front and forget them."""
    while state.ranges:
        oldest = next(iter(state.ranges))
        if not state.ranges[oldest]:
            return
        del state.ranges[oldest]
        state.point = oldest[1] + 1
