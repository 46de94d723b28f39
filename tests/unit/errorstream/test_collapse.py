"""Groups on the live stream: the group filter, `collapse=1` (first occurrence, then at most one summary per
group per interval), alerts in the fan-out, and the checks of the new envelope fields. Pure code, a fake clock."""

from __future__ import annotations

import orjson
import pytest
from marshmallow import ValidationError

from panopticon.errorstream.hub import ClientQueue, Collapser, Hub, Subscriber
from panopticon.errorstream.protocol import (
    ClientFilter,
    InvalidMessage,
    LiveMessage,
    alert_envelope,
    envelope,
    live_message,
    make_cursor,
    parse_stream_params,
)

A, B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


def message(n: int, fingerprint: str | None = A, service: str = "svc", new: bool = False) -> LiveMessage:
    log = {"service_name": service, "environment": "prod", "level": "ERROR", "level_num": 5, "message": f"m {n}",
           "ingested_at": "2024-05-01T12:00:00.000Z", "fingerprint": fingerprint, "new_group": new}
    return live_message(envelope(f"id-{n}", make_cursor(1714564800000 + n, f"id-{n}"), log))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_envelopes_carry_the_group_and_whether_it_is_new() -> None:
    found = message(1, new=True)
    assert (found.fingerprint, found.new_group, found.message) == (A, True, "m 1")
    assert message(2, fingerprint=None).fingerprint is None
    for field, value in (("fingerprint", "not-hex"), ("fingerprint", 7), ("new_group", "yes")):
        log = {"service_name": "s", "level": "ERROR", field: value}
        with pytest.raises(InvalidMessage) as wrong:
            live_message(envelope("x", make_cursor(1714564800000, "x"), log))
        assert wrong.value.field == field


def test_the_group_filter() -> None:
    wanted = ClientFilter(groups=frozenset({A}))
    assert wanted.matches("svc", "prod", 5, A) and not wanted.matches("svc", "prod", 5, B)
    assert not wanted.matches("svc", "prod", 5, None)
    params = parse_stream_params({"group": f"{A},{B}", "collapse": "1"})
    assert params.filter.groups == {A, B} and params.collapse is True
    assert parse_stream_params({}).collapse is False
    for bad in ({"group": "xyz"}, {"group": ","}, {"collapse": "maybe"}):
        with pytest.raises(ValidationError) as refused:
            parse_stream_params(bad)
        assert set(refused.value.messages) == set(bad)


def test_collapse_sends_each_group_once_then_one_summary_per_interval() -> None:
    clock = Clock()
    collapser = Collapser(10, clock=clock)
    storm = [message(n, A if n % 1000 else B) for n in range(10_000)]
    sent = [m.doc_id for m in storm if collapser.admit(m)]
    assert sent == ["id-0", "id-1"], "the first of each group"
    assert collapser.due() == [], "no summary before the interval"
    clock.now += 10
    summaries = [orjson.loads(f[2:] if f[1] < 126 else f[4:]) for f in collapser.due()]
    assert {s["fingerprint"]: s["count"] for s in summaries} == {A: 9989, B: 9}
    assert all(s["event"] == "error-group" for s in summaries)
    last_a = next(s for s in summaries if s["fingerprint"] == A)
    assert last_a["id"] == "id-9999" and last_a["message"] == "m 9999"
    assert collapser.due() == [], "nothing new: no summary"
    collapser.admit(message(20_000, A))
    clock.now += 5
    assert collapser.due() == [], "at most one per interval"
    clock.now += 5
    assert len(collapser.due()) == 1


def test_logs_without_a_group_pass_and_gap_fill_repeats_count_once() -> None:
    collapser = Collapser(1, clock=Clock())
    assert collapser.admit(message(1, fingerprint=None)) and collapser.admit(message(2, fingerprint=None))
    collapser.tracking = True
    assert collapser.admit(message(3)) is True
    assert collapser.admit(message(4)) is False and collapser.admit(message(4)) is False
    assert collapser.admit(message(3)) is False, "the gap fill repeats a log the live feed had"
    assert collapser.counted == 1
    collapser.stop_tracking()
    assert collapser.seen_ids == set()


def test_a_collapse_client_queues_only_first_occurrences_while_a_plain_one_gets_all() -> None:
    hub = Hub("redis://unused", "ch", window=100_000)
    plain = Subscriber(ClientFilter(), ClientQueue(100_000))
    collapsed = Subscriber(ClientFilter(), ClientQueue(5), collapser=Collapser(10, clock=Clock()))
    hub.add(plain)
    hub.add(collapsed)
    for n in range(10_010):
        hub.deliver(message(n, B if n % 1001 == 0 else A))
    assert len(plain.queue.take()[0]) == 10_010
    items, dropped = collapsed.queue.take()
    assert [m.doc_id for m in items] == ["id-0", "id-1"] and dropped == 0


def test_alerts_reach_clients_whose_filter_does_not_exclude_them() -> None:
    hub = Hub("redis://unused", "ch", window=100)
    everyone = Subscriber(ClientFilter(min_level=6, groups=frozenset({A})), ClientQueue(10))
    team = Subscriber(ClientFilter(services=frozenset({"svc"})), ClientQueue(10))
    other = Subscriber(ClientFilter(services=frozenset({"other"})), ClientQueue(10))
    for s in (everyone, team, other):
        hub.add(s)
    raw = alert_envelope("rule:1", {"rule": "r", "state": "firing", "service_name": "svc", "environment": "prod",
                                    "at": "2024-05-01T12:00:00.000Z"})
    hub.deliver_raw(raw)
    hub.deliver_raw(raw)  # a repeat
    assert [len(s.queue.take()[0]) for s in (everyone, team, other)] == [1, 1, 0]
    assert hub.alerts == 1 and hub.recent.last_seq == 0, "alerts take no place in the publish order"
    hub.deliver_raw(alert_envelope("rule:2", {"rule": "r", "state": "exploded", "at": "2024-05-01T12:00:00Z"}))
    assert hub.invalid == 1
