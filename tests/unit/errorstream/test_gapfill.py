"""GapFills: a bounded number of reads at once, one read for clients asking the same, never a read joined late."""

from __future__ import annotations

import threading
import time

from panopticon.errorstream.gapfill import GapFills


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_clients_asking_the_same_while_a_read_waits_share_it_and_slots_bound_the_reads() -> None:
    fills = GapFills(slots=1)
    fetched: list[str] = []
    release_first = threading.Event()
    results: dict[str, object] = {}

    def fetch(key: str):
        def run():
            fetched.append(key)
            return [key], 0
        return run

    def client(name: str, key: str, hold: threading.Event | None = None) -> None:
        with fills.read(key, fetch(key)) as (messages, skipped):
            results[name] = messages
            if hold is not None:
                hold.wait(10)

    first = threading.Thread(target=client, args=("first", "A", release_first))
    first.start()
    _wait_for(lambda: "first" in results, "the first read")
    # The only slot is held while `first` writes: these wait, and the two asking "B" share one read.
    waiting = [threading.Thread(target=client, args=(f"b{i}", "B")) for i in range(5)]
    for t in waiting:
        t.start()
    time.sleep(0.05)
    assert fetched == ["A"], "no second read while the slot is held"
    release_first.set()
    for t in [first, *waiting]:
        t.join(10)
    assert fetched == ["A", "B"], "five clients with the same question: one read"
    assert all(results[f"b{i}"] == ["B"] for i in range(5))
    assert fills.reads == 2 and fills.shared == 4


def test_a_read_that_has_started_is_not_joined() -> None:
    """A newcomer subscribed after the read began: sharing it could miss what was published in between."""
    fills = GapFills(slots=2)
    inside = threading.Event()
    go_on = threading.Event()
    calls: list[int] = []

    def slow_fetch():
        calls.append(1)
        inside.set()
        go_on.wait(10)
        return [], 0

    def quick_fetch():
        calls.append(2)
        return [], 0

    def early() -> None:
        with fills.read("same", slow_fetch):
            pass

    t = threading.Thread(target=early)
    t.start()
    inside.wait(10)
    with fills.read("same", quick_fetch):
        pass
    go_on.set()
    t.join(10)
    assert sorted(calls) == [1, 2]


def test_a_failed_read_fails_every_client_that_shared_it_and_frees_its_slot() -> None:
    fills = GapFills(slots=1)

    def broken():
        raise OSError("engine down")

    for _ in range(3):  # the slot is released each time, or the third would wait for ever
        try:
            with fills.read("k", broken):
                raise AssertionError("not reached")
        except OSError as exc:
            assert "engine down" in str(exc)
