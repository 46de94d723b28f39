"""Decide which Kafka offsets are safe to commit.

Batches are stored by workers that finish in any order, but a Kafka commit says "everything
before this offset is stored". So the commit point of a partition only moves over a range once
that range and every range handed off before it are done. Offsets may have gaps (compaction,
transaction markers), so the partition is seen as the sequence of tracked ranges, not as a
sequence of integers.

Pure logic: no Kafka client here; the consumer feeds it and performs the commits.

The tracker also keeps each partition's *hand-off reservation*: before any message at or above it is
handed off, the bridge commits (its current commit point, unchanged) with the reservation raised in the
commit's metadata. A new owner of the partition (after a crash, a restart or a rebalance) reads it back:
every message below it may have been stored already, so its batches are sent as possible replays, which
the worker checks against every backing index of the data stream (a data stream's `_id` is only unique
within one backing index, so a replay across a rollover would otherwise be stored twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TopicPartition = tuple[str, int]
Range = tuple[int, int]


RESERVATION_PREFIX = "panopticon:handed-off-below="


@dataclass(slots=True)
class _PartitionState:
    """Ranges in hand-off order (dicts keep insertion order), each mapped to "done"."""

    point: int | None  # next offset to commit: everything below is stored, or was already committed
    committed: int | None  # last offset given to mark_committed (or the start position)
    highest: int | None = None  # largest offset ever tracked, to refuse out-of-order hand-offs
    ranges: dict[Range, bool] = field(default_factory=dict)
    reserved: int = 0  # hand-offs below this offset are covered by a committed reservation
    replay_below: int = 0  # a previous owner may have handed off (and stored) messages below this
    first_seen: int | None = None  # the first offset read since assignment (a safe commit when none exists)


def reservation_metadata(reserved: int) -> str:
    """The commit metadata that records a reservation."""
    return f"{RESERVATION_PREFIX}{reserved}"


def parse_reservation(metadata: str | None) -> int:
    """The reservation a commit's metadata records (0 for none or for metadata that is not ours)."""
    if not metadata or not metadata.startswith(RESERVATION_PREFIX):
        return 0
    try:
        return max(0, int(metadata[len(RESERVATION_PREFIX):]))
    except ValueError:
        return 0


class OffsetTracker:
    """Per partition: which offsets were handed off, which are done; the commit point is the end of the
    contiguous done prefix."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionState] = {}

    def assign(self, tp: TopicPartition, next_offset: int | None = None, replay_below: int = 0) -> None:
        """Start afresh for ``tp``; ``next_offset`` is where reading resumes (its committed offset), and
        ``replay_below`` the reservation its previous owner committed (see the module docstring).

        Knowing the offset means nothing is reported until real progress is made. Assigning a partition
        that is already assigned drops its old state, like a revoke followed by an assign.
        """
        highest = None if next_offset is None else next_offset - 1
        self._partitions[tp] = _PartitionState(point=next_offset, committed=next_offset, highest=highest,
                                               reserved=replay_below, replay_below=replay_below)

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

    def split(self, tp: TopicPartition, whole: Range, parts: list[Range]) -> None:
        """Replace a tracked, not yet done range by consecutive parts of it, in its place (a bisected batch).

        Ignored for partitions not assigned and ranges not tracked, like ``done``.
        """
        state = self._partitions.get(tp)
        if state is None or state.ranges.get(whole) is not False:
            return
        if parts[0][0] != whole[0] or parts[-1][1] != whole[1] or any(
                a[1] >= b[0] for a, b in zip(parts, parts[1:], strict=False)):
            raise ValueError(f"{parts} do not split {whole} of {tp} in order")
        rebuilt: dict[Range, bool] = {}
        for key, value in state.ranges.items():
            if key == whole:
                rebuilt.update((part, False) for part in parts)
            else:
                rebuilt[key] = value
        state.ranges = rebuilt

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

    # --- reservations --------------------------------------------------------------------------
    def seen(self, tp: TopicPartition, offset: int) -> None:
        """Note an offset read; the first one is a safe commit point for a group that has none yet."""
        state = self._partitions.get(tp)
        if state is not None and state.first_seen is None:
            state.first_seen = offset

    def is_replay(self, tp: TopicPartition, offset: int) -> bool:
        """True when a previous owner of ``tp`` may have stored this message already."""
        state = self._partitions.get(tp)
        return state is not None and offset < state.replay_below

    def reservation_needed(self, tp: TopicPartition, last: int, ahead: int) -> int | None:
        """The reservation to commit before handing off up to ``last``, or None when it is covered."""
        state = self._partitions.get(tp)
        if state is None or last < state.reserved:
            return None
        return last + 1 + ahead

    def reserve(self, tp: TopicPartition, reserved: int) -> None:
        """Record a reservation the consumer committed."""
        state = self._partitions.get(tp)
        if state is not None:
            state.reserved = max(state.reserved, reserved)

    def reservation(self, tp: TopicPartition) -> int:
        state = self._partitions.get(tp)
        return state.reserved if state is not None else 0

    def safe_commit_point(self, tp: TopicPartition) -> int | None:
        """The offset a reservation commit carries: the last committed one (a reservation moves no commit point:
        commits keep their own cadence), or for a group that has none yet the first offset read."""
        state = self._partitions.get(tp)
        if state is None:
            return None
        for candidate in (state.committed, state.first_seen):
            if candidate is not None:
                return candidate
        return None

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
