"""The hub's pure parts: bounded client queues, filtered fan-out, checks before fan-out, the publish-order
window, and the supervision of its thread."""

from __future__ import annotations

import orjson
import pytest

from panopticon import telemetry
from panopticon.errorstream.hub import ClientQueue, Hub, RecentWindow, Subscriber
from panopticon.errorstream.protocol import ClientFilter, LiveMessage, envelope, live_message, make_cursor


def raw_envelope(n: int, service: str = "a", level: int = 5) -> bytes:
    log = {"service_name": service, "environment": "prod", "level": "FATAL" if level == 6 else "ERROR",
           "level_num": level, "ingested_at": "2024-05-01T12:00:00.000Z"}
    return envelope(f"id-{n}", make_cursor(1714564800000 + n, f"id-{n}"), log)


def message(n: int, service: str = "a", level: int = 5) -> LiveMessage:
    return live_message(raw_envelope(n, service, level))


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
    at = window.position("id-3")
    assert at is not None and window.published_by("id-2", at) and window.published_by("id-3", at)
    assert not window.published_by("id-4", at)
    assert window.position("id-0") is None, "forgotten positions are unknown"
    assert window.last_ingested_ms == 1714564800004


def test_a_seeded_window_places_old_cursors_and_still_delivers_each_id_once() -> None:
    """A process that starts late learns the publish order from the relay's list; what it learnt is
    placed, and a copy arriving on the channel afterwards is delivered (once), not taken for a repeat."""
    window = RecentWindow(size=100)
    assert window.seed(["id-0", "id-1", "id-2"]) == 3
    assert window.position("id-1") == 2 and "id-1" not in window, "known, not delivered here"
    assert window.add(message(2)) is True and window.add(message(2)) is False
    assert window.position("id-2") == 3, "its place in the publish order is kept"
    assert window.add(message(7)) is True and window.position("id-7") == 4
    assert window.seed(["id-8"]) == 0, "only an empty window is seeded"


def _bad(**changes) -> bytes:
    doc = {"event": "error-log", "cursor": make_cursor(1714564800000, "x"), "id": "x",
           "log": {"service_name": "a", "environment": "prod", "level": "ERROR"}}
    for key, value in changes.items():
        if key in ("event", "cursor", "id", "log"):
            doc[key] = value
        else:
            doc["log"][key] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(b"\xff{", "json", id="not-json"),
        pytest.param(b"[1, 2]", "json", id="not-an-object"),
        pytest.param(_bad(event="ping"), "event", id="event"),
        pytest.param(_bad(id=7), "id", id="id-a-number"),
        pytest.param(_bad(id=""), "id", id="id-empty"),
        pytest.param(_bad(id="x" * 513), "id", id="id-too-long"),
        pytest.param(_bad(cursor=["x"]), "cursor", id="cursor-a-list"),
        pytest.param(_bad(cursor="soon"), "cursor", id="cursor-unreadable"),
        pytest.param(_bad(cursor=make_cursor(99, "x")), "cursor", id="cursor-before-2000"),
        pytest.param(_bad(cursor=make_cursor(9_999_999_999_999, "x")), "cursor", id="cursor-far-future"),
        pytest.param(_bad(log=["x"]), "log", id="log-a-list"),
        pytest.param(_bad(service_name=["a", "b"]), "service_name", id="service-a-list"),
        pytest.param(_bad(service_name={"a": 1}), "service_name", id="service-an-object"),
        pytest.param(_bad(environment=3), "environment", id="environment-a-number"),
        pytest.param(_bad(level=5), "level", id="level-a-number"),
        pytest.param(_bad(level="PANIC"), "level", id="level-unknown"),
        pytest.param(_bad(level_num="5"), "level_num", id="level-num-a-string"),
        pytest.param(_bad(level_num=True), "level_num", id="level-num-a-bool"),
        pytest.param(_bad(trace_id={"x": 1}), "trace_id", id="trace-id-an-object"),
        pytest.param(_bad(span_id=[1]), "span_id", id="span-id-a-list"),
        pytest.param(_bad(message="x" * 5000), "size", id="too-large"),
    ],
)
def test_every_bad_envelope_is_counted_by_field_and_the_feed_goes_on(raw: bytes, field: str) -> None:
    hub = Hub("redis://unused", "ch", window=100, max_bytes=4096, clock=lambda: 1714564800.0)
    client = Subscriber(ClientFilter(services=frozenset({"a"})), ClientQueue(100))
    hub.add(client)
    before = _invalid_count(field)
    hub.deliver_raw(raw)
    assert (hub.invalid, hub.delivered) == (1, 0)
    assert _invalid_count(field) == before + 1
    hub.deliver_raw(raw_envelope(1))
    assert [m.doc_id for m in client.queue.take()[0]] == ["id-1"]


def _invalid_count(field: str) -> float:
    value = telemetry.REGISTRY.get_sample_value("panopticon_ws_invalid_messages_total", {"field": field})
    return value or 0.0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_hub_thread_is_started_again() -> None:
    class Fragile(Hub):
        def _run(self) -> None:
            raise RuntimeError("a bug")

    hub = Fragile("redis://unused", "ch", window=10)
    hub.start()
    assert hub._thread is not None
    hub._thread.join(5)
    assert not hub.feed_up and hub.stats()["feed"] == "down"
    hub.start()
    assert hub.restarts == 1
    assert hub._thread is not None
    hub._thread.join(5)  # its exception surfaces now, under this test's filter, not in a later test's
