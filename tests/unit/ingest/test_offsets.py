"""OffsetTracker: commit only what was fully processed, whatever order the workers finish in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panopticon.ingest.offsets import OffsetTracker

TP = ("apm.logs", 0)
OTHER = ("apm.spans", 3)


def tracker_with(ranges: list[tuple[int, int]], next_offset: int | None = 0) -> OffsetTracker:
    tracker = OffsetTracker()
    tracker.assign(TP, next_offset)
    for first, last in ranges:
        tracker.track(TP, first, last)
    return tracker


THREE = [(0, 9), (10, 19), (20, 29)]
GAPPY = [(0, 4), (8, 9), (15, 20)]

COMPLETIONS = [
    pytest.param(THREE, [], None, id="nothing-done"),
    pytest.param(THREE, [(0, 9)], 10, id="first-done"),
    pytest.param(THREE, [(10, 19)], None, id="second-done-first-pending"),
    pytest.param(THREE, [(20, 29), (10, 19)], None, id="later-done-first-pending"),
    pytest.param(THREE, [(10, 19), (0, 9)], 20, id="out-of-order-then-catch-up"),
    pytest.param(THREE, [(20, 29), (0, 9)], 10, id="hole-in-the-middle-stops-point"),
    pytest.param(THREE, [(20, 29), (0, 9), (10, 19)], 30, id="all-done-reverse-ish"),
    pytest.param(GAPPY, [(0, 4)], 5, id="gap-point-after-first"),
    pytest.param(GAPPY, [(0, 4), (8, 9)], 10, id="gap-jumps-over-missing-offsets"),
    pytest.param(GAPPY, [(15, 20), (8, 9), (0, 4)], 21, id="gap-all-done"),
    pytest.param(THREE, [(0, 9), (0, 9)], 10, id="duplicate-done-harmless"),
    pytest.param(THREE, [(0, 5)], None, id="done-of-untracked-range-ignored"),
]


@pytest.mark.parametrize(("ranges", "completed", "expected"), COMPLETIONS)
def test_commit_point(ranges: list, completed: list, expected: int | None) -> None:
    tracker = tracker_with(ranges)
    for first, last in completed:
        tracker.done(TP, first, last)
    assert tracker.committable().get(TP) == expected


def test_start_position_not_reported_until_progress() -> None:
    tracker = tracker_with([(100, 109)], next_offset=100)
    assert tracker.committable() == {}
    tracker.done(TP, 100, 109)
    assert tracker.committable() == {TP: 110}


def test_unknown_start_position_reports_first_progress() -> None:
    tracker = tracker_with([(100, 109)], next_offset=None)
    assert tracker.committable() == {}
    tracker.done(TP, 100, 109)
    assert tracker.committable() == {TP: 110}


def test_committable_only_when_advanced() -> None:
    tracker = tracker_with(THREE)
    tracker.done(TP, 0, 9)
    assert tracker.committable() == {TP: 10}
    assert tracker.committable() == {TP: 10}, "not committed yet, so still offered"
    tracker.mark_committed({TP: 10})
    assert tracker.committable() == {}
    tracker.done(TP, 20, 29)
    assert tracker.committable() == {}, "blocked by 10..19"
    tracker.done(TP, 10, 19)
    assert tracker.committable() == {TP: 30}


def test_stale_mark_committed_does_not_go_back() -> None:
    tracker = tracker_with(THREE)
    tracker.done(TP, 0, 9)
    tracker.done(TP, 10, 19)
    tracker.mark_committed({TP: 20})
    tracker.mark_committed({TP: 10})
    assert tracker.committable() == {}


def test_partitions_are_independent() -> None:
    tracker = tracker_with(THREE)
    tracker.assign(OTHER, 50)
    tracker.track(OTHER, 50, 59)
    tracker.done(OTHER, 50, 59)
    assert tracker.committable() == {OTHER: 60}
    tracker.done(TP, 0, 9)
    assert tracker.committable() == {TP: 10, OTHER: 60}


def test_revoke_then_done_ignored() -> None:
    tracker = tracker_with(THREE)
    tracker.revoke(TP)
    tracker.done(TP, 0, 9)
    assert tracker.committable() == {}


def test_revoke_forgets_pending_commit() -> None:
    tracker = tracker_with(THREE)
    tracker.done(TP, 0, 9)
    tracker.revoke(TP)
    assert tracker.committable() == {}
    tracker.mark_committed({TP: 10})  # a late commit callback must not bring it back
    assert tracker.committable() == {}


def test_track_on_unassigned_ignored() -> None:
    tracker = OffsetTracker()
    tracker.track(TP, 0, 9)
    tracker.done(TP, 0, 9)
    assert tracker.committable() == {}


def test_reassign_starts_afresh() -> None:
    tracker = tracker_with(THREE)
    tracker.revoke(TP)
    tracker.assign(TP, 0)
    tracker.track(TP, 0, 4)
    tracker.done(TP, 10, 19)  # stale task from the earlier assignment
    assert tracker.committable() == {}
    tracker.done(TP, 0, 4)
    assert tracker.committable() == {TP: 5}


def test_retry_retrack_keeps_place() -> None:
    tracker = tracker_with(THREE)
    tracker.done(TP, 10, 19)
    tracker.track(TP, 0, 9)  # first batch failed and is handed off again
    tracker.track(TP, 10, 19)  # re-track of a finished range changes nothing
    assert tracker.committable() == {}
    tracker.done(TP, 0, 9)
    assert tracker.committable() == {TP: 20}


def test_retry_of_already_committed_range_is_noop() -> None:
    tracker = tracker_with(THREE)
    tracker.done(TP, 0, 9)
    tracker.mark_committed({TP: 10})
    tracker.track(TP, 0, 9)
    tracker.done(TP, 0, 9)
    assert tracker.committable() == {}
    tracker.done(TP, 10, 19)
    assert tracker.committable() == {TP: 20}


@pytest.mark.parametrize(
    ("first", "last"),
    [
        pytest.param(5, 15, id="overlaps-tracked"),
        pytest.param(25, 35, id="overlaps-last-tracked"),
        pytest.param(29, 29, id="same-end-offset"),
        pytest.param(9, 8, id="empty-range"),
    ],
)
def test_track_rejects_out_of_order(first: int, last: int) -> None:
    tracker = tracker_with(THREE)
    with pytest.raises(ValueError):
        tracker.track(TP, first, last)


@st.composite
def ranges_and_order(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]], list[int]]:
    """Increasing ranges with random gaps, and a random completion order (with retries)."""
    start = draw(st.integers(min_value=0, max_value=1000))
    count = draw(st.integers(min_value=1, max_value=12))
    ranges = []
    offset = start
    for _ in range(count):
        offset += draw(st.integers(min_value=0, max_value=5))  # gap before the range
        length = draw(st.integers(min_value=1, max_value=20))
        ranges.append((offset, offset + length - 1))
        offset += length
    order = draw(st.permutations(range(count)))
    retries = draw(st.lists(st.integers(min_value=0, max_value=count - 1), max_size=5))
    return start, ranges, [*retries, *order]


@given(ranges_and_order(), st.booleans())
def test_commit_never_passes_unfinished_range(case: tuple, commit_as_we_go: bool) -> None:
    start, ranges, steps = case
    tracker = OffsetTracker()
    tracker.assign(TP, start)
    for first, last in ranges:
        tracker.track(TP, first, last)
    finished: set[int] = set()
    committed = start
    for index in steps:
        if index in finished:
            tracker.track(TP, *ranges[index])  # a retry of a finished range
        tracker.done(TP, *ranges[index])
        finished.add(index)
        offered = tracker.committable().get(TP)
        if offered is not None:
            assert offered > committed, "only offered when it advanced"
            unfinished = [ranges[i][0] for i in range(len(ranges)) if i not in finished]
            if unfinished:
                assert offered <= min(unfinished)
            prefix = next((i for i in range(len(ranges)) if i not in finished), len(ranges))
            assert offered == ranges[prefix - 1][1] + 1
            if commit_as_we_go:
                tracker.mark_committed({TP: offered})
                committed = offered
    expected_end = ranges[-1][1] + 1
    assert tracker.committable().get(TP, committed) == expected_end


def test_split_replaces_a_range_in_its_place() -> None:
    tracker = tracker_with(THREE)
    tracker.split(TP, (10, 19), [(10, 14), (15, 19)])
    tracker.done(TP, 0, 9)
    tracker.done(TP, 15, 19)
    assert tracker.committable()[TP] == 10  # the first half still holds the point
    tracker.done(TP, 10, 14)
    assert tracker.committable()[TP] == 20
    tracker.done(TP, 20, 29)
    assert tracker.committable()[TP] == 30


def test_split_refuses_parts_that_do_not_split_the_range() -> None:
    tracker = tracker_with(THREE)
    with pytest.raises(ValueError):
        tracker.split(TP, (10, 19), [(10, 14), (14, 19)])
    with pytest.raises(ValueError):
        tracker.split(TP, (10, 19), [(11, 19)])
    tracker.split(TP, (40, 49), [(40, 44), (45, 49)])  # not tracked: ignored, like done()


def test_reservations() -> None:
    from panopticon.ingest.offsets import parse_reservation, reservation_metadata

    tracker = OffsetTracker()
    tracker.assign(TP, None, replay_below=parse_reservation(reservation_metadata(120)))
    assert tracker.is_replay(TP, 119) and not tracker.is_replay(TP, 120)
    assert tracker.reservation_needed(TP, 100, ahead=50) is None  # the previous owner's reservation covers it
    assert tracker.reservation_needed(TP, 120, ahead=50) == 171
    tracker.reserve(TP, 171)
    assert tracker.reservation_needed(TP, 170, ahead=50) is None and tracker.reservation(TP) == 171
    assert tracker.safe_commit_point(TP) is None
    tracker.seen(TP, 100)
    tracker.seen(TP, 101)
    assert tracker.safe_commit_point(TP) == 100  # a new group: the first offset read
    for junk in (None, "", "something else", "panopticon:handed-off-below=x"):
        assert parse_reservation(junk) == 0
