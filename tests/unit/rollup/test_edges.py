"""The service map's call rules (`edges.calls_of`, `edges.peer_of`), table by table."""

from __future__ import annotations

import pytest

from panopticon.model.histogram import bucket_index
from panopticon.rollup.edges import DATABASE, EXTERNAL, QUEUE, CallSpan, EdgeKey, calls_of, peer_of

W = 60_000


def span(span_id: str, service: str, *, parent: str | None = None, kind: str | None = "SERVER", at: int = 0,
         ms: float = 10.0, error: bool = False, peer: tuple[str, str] | None = None, env: str = "prod",
         trace: str = "t1") -> CallSpan:
    return CallSpan(trace, span_id, parent, service, env, kind, at, ms, bucket_index(ms), error, peer)


@pytest.mark.parametrize(("kind", "attributes", "expected"), [
    ("CLIENT", {"peer.service": "stripe"}, ("stripe", EXTERNAL)),
    ("CLIENT", {"db.system": "postgresql", "server.address": "db1"}, ("postgresql", DATABASE)),
    ("CLIENT", {"peer.service": "orders-db", "db.system": "postgresql"}, ("orders-db", DATABASE)),
    ("PRODUCER", {"messaging.system": "kafka"}, ("kafka", QUEUE)),
    ("PRODUCER", {"server.address": "broker-1"}, ("broker-1", QUEUE)),
    ("CLIENT", {"server.address": "api.example.com"}, ("api.example.com", EXTERNAL)),
    ("CLIENT", {"net.peer.name": "legacy"}, ("legacy", EXTERNAL)),
    ("CLIENT", {"peer.service": ""}, None),
    ("CLIENT", {"peer.service": True}, None),
    ("CLIENT", {}, None),
    ("SERVER", {"peer.service": "stripe"}, None),
    ("INTERNAL", {"db.system": "redis"}, None),
    (None, {"db.system": "redis"}, None),
], ids=lambda v: str(v))
def test_which_spans_name_a_peer(kind, attributes, expected) -> None:
    assert peer_of(kind, attributes) == expected


def test_a_child_in_another_service_is_one_call_with_the_childs_duration_and_error() -> None:
    spans = [span("c1", "checkout", parent="g1", at=5, ms=80, error=True),
             span("c2", "checkout", parent="g2", at=W + 5, ms=20)]
    parents = {("t1", "g1"): ("gateway", "prod"), ("t1", "g2"): ("gateway", "prod")}
    out = calls_of(spans, parents, {}, W)
    key = EdgeKey("gateway", "prod", "checkout", "prod")
    assert sorted(out) == [0, W]
    assert (out[0][key].requests, out[0][key].errors, out[0][key].duration_sum) == (1, 1, 80)
    assert (out[W][key].requests, out[W][key].errors) == (1, 0)
    assert out[0][key].histogram.count == 1


def test_no_call_within_a_service_or_without_a_stored_parent() -> None:
    spans = [span("c1", "checkout", parent="c0", kind="INTERNAL"), span("c2", "checkout", parent="missing"),
             span("c3", "checkout", parent="c3")]
    assert calls_of(spans, {("t1", "c0"): ("checkout", "prod")}, {}, W) == {}


def test_a_peer_call_counts_only_while_no_other_service_answered_it() -> None:
    client = span("g1", "gateway", parent="g0", kind="CLIENT", ms=30, peer=("payments", EXTERNAL))
    parents = {("t1", "g0"): ("gateway", "prod")}
    alone = calls_of([client], parents, {}, W)
    assert list(alone[0]) == [EdgeKey("gateway", "prod", "payments", "", EXTERNAL)]
    # Its server side arrives: the peer call is replaced by the service call, never counted twice.
    server = span("p1", "payments", parent="g1", ms=25)
    with_client = {**parents, ("t1", "g1"): ("gateway", "prod")}
    answered = calls_of([client, server], with_client, {("t1", "g1"): {"payments"}}, W)
    assert list(answered[0]) == [EdgeKey("gateway", "prod", "payments", "prod")]
    assert answered[0][EdgeKey("gateway", "prod", "payments", "prod")].duration_sum == 25
    # A child in its own service (an internal span) leaves it a peer call.
    inner = calls_of([client], parents, {("t1", "g1"): {"gateway"}}, W)
    assert list(inner[0]) == [EdgeKey("gateway", "prod", "payments", "", EXTERNAL)]


def test_a_root_client_span_can_call_a_database() -> None:
    job = span("j1", "billing", kind="CLIENT", peer=("postgresql", DATABASE), error=True)
    out = calls_of([job], {}, {}, W)
    edge = out[0][EdgeKey("billing", "prod", "postgresql", "", DATABASE)]
    assert (edge.requests, edge.errors) == (1, 1)


def test_calls_of_one_edge_and_window_add_up() -> None:
    spans = [span(f"c{i}", "inventory", parent=f"g{i}", ms=float(i + 1), error=i % 3 == 0) for i in range(9)]
    parents = {("t1", f"g{i}"): ("catalog", "prod") for i in range(9)}
    edge = calls_of(spans, parents, {}, W)[0][EdgeKey("catalog", "prod", "inventory", "prod")]
    assert (edge.requests, edge.errors, edge.duration_min, edge.duration_max) == (9, 3, 1.0, 9.0)
    assert edge.histogram.count == 9 and edge.duration_sum == 45.0
