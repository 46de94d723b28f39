"""The hub's pure parts: bounded client queues, filtered fan-out, the recent-id window."""

from __future__ import annotations

from panopticon.errorstream.hub import ClientQueue, Hub, RecentWindow, Subscriber
from panopticon.errorstream.protocol import ClientFilter, LiveMessage, envelope, live_message, make_cursor


def message(n: int, service: str = "a", level: int = 5) -> LiveMessage:
    log = {"service_name": service, "environment": "prod", "level": "FATAL" if level == 6 else "ERROR",
           "level_num": level, "ingested_at": "2024-05-01T12:00:00.000Z"}
    return live_message(envelope(f"id-{n}", make_cursor(1714564800000 + n, 0, n), log))


def test_queue_overflow_drops_newest_and_counts_once() -> None:
    queue = ClientQueue(limit=3)
    woke = [queue.offer(message(n)) for n in range(5)]
    assert woke == [True, False, False, False, False], "only the first message into an empty queue wakes"
    items, dropped = queue.take()
    assert [m.doc_id for m in items] == ["id-0", "id-1", "id-2"] and dropped == 2
    assert queue.take() == ([], 0), "the count is reported once"
    assert queue.offer(message(9)) is True


def test_fan_out_respects_each_filter_and_does_not_block_on_a_full_queue() -> None:
    hub = Hub("redis://unused", "ch", window=100)
    fast = Subscriber(ClientFilter(), ClientQueue(1000))
    team_b = Subscriber(ClientFilter(services=frozenset({"b"})), ClientQueue(1000))
    fatal = Subscriber(ClientFilter(min_level=6), ClientQueue(1000))
    slow = Subscriber(ClientFilter(), ClientQueue(2))
    for s in (fast, team_b, fatal, slow):
        hub.add(s)
    sent = [message(0, "a"), message(1, "b"), message(2, "a", 6), message(3, "b")]
    for m in sent:
        hub.deliver(m)
    assert [m.doc_id for m in fast.queue.take()[0]] == ["id-0", "id-1", "id-2", "id-3"]
    assert [m.doc_id for m in team_b.queue.take()[0]] == ["id-1", "id-3"]
    assert [m.doc_id for m in fatal.queue.take()[0]] == ["id-2"]
    items, dropped = slow.queue.take()
    assert [m.doc_id for m in items] == ["id-0", "id-1"] and dropped == 2
    assert fast.wake.is_set() and team_b.wake.is_set()


def test_repeats_are_delivered_once() -> None:
    hub = Hub("redis://unused", "ch", window=100)
    client = Subscriber(ClientFilter(), ClientQueue(100))
    hub.add(client)
    assert [hub.deliver(message(n)) for n in (1, 2, 1)] == [True, True, False]
    assert [m.doc_id for m in client.queue.take()[0]] == ["id-1", "id-2"]
    assert hub.repeats == 1


def test_invalid_published_text_is_counted_not_raised() -> None:
    hub = Hub("redis://unused", "ch", window=100)
    hub.deliver_raw(b"garbage")
    assert (hub.invalid, hub.delivered) == (1, 0)


def test_window_places_a_cursor_and_forgets_the_oldest() -> None:
    window = RecentWindow(size=3)
    messages = [message(n) for n in range(5)]
    for m in messages:
        window.add(m)
    assert "id-0" not in window and "id-4" in window
    assert window.delivered_up_to(messages[3].cursor) == {"id-2", "id-3"}
    assert window.delivered_up_to(messages[0].cursor) is None, "forgotten cursors are unknown"
    assert window.last_ingested_ms == 1714564800004
