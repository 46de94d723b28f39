"""GapFills: a bounded number of reads at once, one read for clients asking the same, never a read that began
before the client subscribed."""

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
        with fills.read(key, fetch(key), fills.ticket()) as (messages, skipped):
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


def test_a_read_that_began_before_a_client_subscribed_is_not_shared_with_it() -> None:
    """It could miss what was published between its start and the client's subscription; a client that
    subscribed before it began shares it, even after it began."""
    fills = GapFills(slots=3)
    inside = threading.Event()
    go_on = threading.Event()
    calls: list[str] = []

    def slow_fetch():
        calls.append("slow")
        inside.set()
        go_on.wait(10)
        return ["slow"], 0

    def other_fetch():
        calls.append("other")
        return ["other"], 0

    early_ticket = fills.ticket()  # subscribed before the read begins
    got: dict[str, list[str]] = {}

    def run(name: str, ticket: int) -> None:
        with fills.read("same", slow_fetch if name == "first" else other_fetch, ticket) as (messages, _):
            got[name] = messages

    first = threading.Thread(target=run, args=("first", fills.ticket()))
    first.start()
    inside.wait(10)
    early = threading.Thread(target=run, args=("early", early_ticket))
    early.start()
    run("late", fills.ticket())  # subscribed after the read began: a read of its own
    go_on.set()
    first.join(10)
    early.join(10)
    assert sorted(calls) == ["other", "slow"]
    assert got == {"first": ["slow"], "early": ["slow"], "late": ["other"]}


def test_a_failed_read_fails_every_client_that_shared_it_and_frees_its_slot() -> None:
    fills = GapFills(slots=1)

    def broken():
        raise OSError("engine down")

    for _ in range(3):  # the slot is released each time, or the third would wait for ever
        try:
            with fills.read("k", broken, fills.ticket()):
                raise AssertionError("not reached")
        except OSError as exc:
            assert "engine down" in str(exc)
