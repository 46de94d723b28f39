"""The service map on the real engine: three services, a database and an external API, parents stored after their
children (minutes later, some in an earlier window), and client spans whose server side arrives late.

Every edge's calls and errors are checked exactly against a truth computed here from the generated spans by the
issue's rules (never by our code), and every percentile within the rollups' bound (0.5 %), at each step: before
the late spans are rolled (their windows are read from raw spans) and after (edge rollups only, hourly documents
for whole hours).
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import orjson
import pytest

from panopticon.api.app import create_app
from panopticon.model.histogram import ALPHA
from panopticon.model.times import now_ms
from panopticon.rollup import edges, job
from panopticon.rollup.kinds import KINDS
from panopticon.rollup.windows import HOUR_MS, MINUTE_MS, floor_to
from panopticon.settings import Settings
from panopticon.storage import SearchStore, open_store
from tests.integration.rollup_data import store_spans
from tests.integration.test_rollup import settled

FAST = dict(bulk_task_timeout_seconds=4, search_timeout_seconds=2, rollup_settle_seconds=7, redis_host=None)
TRACES = 240
PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}


def _span(trace: str, span: str, parent: str | None, service: str, name: str, kind: str, start: int, ms: float,
          error: bool, attributes: dict | None = None) -> dict:
    return {"trace_id": trace, "span_id": span, "parent_span_id": parent, "service_name": service,
            "environment": "production", "name": name, "kind": kind, "status": "ERROR" if error else "OK",
            "start_time": start, "duration_ms": ms, "attributes": attributes or {}}


def generate(start_ms: int, seed: int = 17) -> tuple[list[dict], list[dict], list[dict]]:
    """(first batch, second batch, every span). Each trace: gateway -> orders -> billing, orders -> postgresql,
    billing -> stripe. The gateway's client span and the orders client span (the parents of the two server spans)
    come in the second batch; in every 7th trace it is the other way round: the gateway's client span (which names
    `peer.service=orders`) comes first and the orders server span later, so the call is first a peer call and then
    a service call. Every 5th trace's root starts 90 s before its child, in an earlier window."""
    rng = random.Random(seed)
    first, second = [], []
    for i in range(TRACES):
        t = f"{i:032x}"
        at = start_ms + rng.randrange(0, 10 * MINUTE_MS)
        ms = {name: round(rng.lognormvariate(mu, 0.7), 3)
              for name, mu in (("orders", 3.5), ("billing", 3.0), ("db", 1.5), ("stripe", 4.0))}
        err = {name: rng.random() < 0.08 for name in ms}
        root_at = at - 90_000 if i % 5 == 0 else at - 2
        root = _span(t, f"{i:08x}a0000000", None, "gateway", "GET /checkout", "SERVER", root_at, 95_000 + ms["orders"],
                     False)
        g_client = _span(t, f"{i:08x}b0000000", root["span_id"], "gateway", "call orders", "CLIENT", at - 1,
                         ms["orders"] + 1, err["orders"], {"peer.service": "orders"})
        o_server = _span(t, f"{i:08x}c0000000", g_client["span_id"], "orders", "POST /orders", "SERVER", at,
                         ms["orders"], err["orders"])
        o_db = _span(t, f"{i:08x}d0000000", o_server["span_id"], "orders", "INSERT orders", "CLIENT", at + 1, ms["db"],
                     err["db"], {"db.system": "postgresql", "db.name": "orders"})
        o_client = _span(t, f"{i:08x}e0000000", o_server["span_id"], "orders", "call billing", "CLIENT", at + 2,
                         ms["billing"] + 1, err["billing"])
        b_server = _span(t, f"{i:08x}f0000000", o_client["span_id"], "billing", "POST /charge", "SERVER", at + 3,
                         ms["billing"], err["billing"])
        b_ext = _span(t, f"{i:08x}10000000", b_server["span_id"], "billing", "POST /v1/charges", "CLIENT", at + 4,
                      ms["stripe"], err["stripe"], {"peer.service": "stripe", "server.address": "api.stripe.com"})
        if i % 7 == 0:
            first += [root, g_client, o_db, o_client, b_server, b_ext]
            second += [o_server]
        else:
            first += [root, o_server, o_db, b_server, b_ext]
            second += [g_client, o_client]
    return first, second, first + second


def truth(spans: list[dict], start_ms: int, end_ms: int) -> dict[tuple[str, str, str], dict]:
    """{(caller, callee, kind): {calls, errors, durations}} by the issue's rules, from the spans present."""
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    children: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in spans:
        if s["parent_span_id"]:
            children[(s["trace_id"], s["parent_span_id"])].add(s["service_name"])
    out: dict = defaultdict(lambda: {"calls": 0, "errors": 0, "durations": []})

    def add(key: tuple[str, str, str], s: dict) -> None:
        out[key]["calls"] += 1
        out[key]["errors"] += s["status"] == "ERROR"
        out[key]["durations"].append(s["duration_ms"])

    for s in spans:
        if not start_ms <= s["start_time"] < end_ms:
            continue
        parent = by_id.get((s["trace_id"], s["parent_span_id"]))
        if parent is not None and parent["service_name"] != s["service_name"]:
            add((parent["service_name"], s["service_name"], "service"), s)
        attributes = s["attributes"]
        answered = children[(s["trace_id"], s["span_id"])] - {s["service_name"]}
        if s["kind"] == "CLIENT" and not answered:
            if "peer.service" in attributes:
                add((s["service_name"], attributes["peer.service"],
                     "database" if "db.system" in attributes else "external"), s)
            elif "db.system" in attributes:
                add((s["service_name"], attributes["db.system"], "database"), s)
    return dict(out)


def _messages(spans: list[dict]) -> list[bytes]:
    return [orjson.dumps(s) for s in spans]


def _map(settings: Settings, start: int, end: int) -> dict:
    response = create_app(settings).test_client().get(f"/query/dependencies?start={start}&end={end}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _check(answer: dict, expected: dict, what: str) -> None:
    shown = {(e["caller"], e["callee"], e["callee_kind"]): e for e in answer["edges"]}
    assert set(shown) == set(expected), (what, sorted(shown), sorted(expected))
    for key, want in expected.items():
        edge = shown[key]
        assert (edge["calls"], edge["errors"]) == (want["calls"], want["errors"]), (what, key)
        assert edge["error_rate"] == pytest.approx(want["errors"] / want["calls"]), (what, key)
        for name, q in PERCENTILES.items():
            exact = float(np.percentile(np.array(want["durations"]), q, method="inverted_cdf"))
            assert abs(edge[name] - exact) <= ALPHA * exact + 1e-9, (what, key, name, edge[name], exact)


def _roll_all(store: SearchStore, now: int) -> None:
    for kind in KINDS:
        for _ in range(20):
            if not job.roll_due(store, now, kind=kind).pending:
                break


def test_every_edge_is_exact_before_and_after_late_parents_are_rolled(namespace: Settings, store: SearchStore) -> None:
    settings = namespace.replace(**FAST)
    store = open_store(settings)
    hour = floor_to(now_ms() - 3 * HOUR_MS, HOUR_MS)
    start = hour + 5 * MINUTE_MS
    first, second, everything = generate(start)
    lo, hi = start - 2 * MINUTE_MS, start + 12 * MINUTE_MS  # minute-aligned: no partial windows
    first_stored = now_ms() - 30 * MINUTE_MS
    store_spans(store, _messages(first), first_stored)
    _roll_all(store, settled(store, first_stored))

    early = _map(settings, lo, hi)
    _check(early, truth(first, lo, hi), "first batch, rolled")
    assert early["sources"]["rollup"]["documents"] > 0 and early["sources"]["rollup"]["windows_read_raw"] == 0
    # The every-7th traces' gateway client span has no server child yet: a peer call to "orders".
    assert any(e["callee_kind"] == "external" and e["callee"] == "orders" for e in early["edges"])

    second_stored = first_stored + 10 * MINUTE_MS  # the parents, ten minutes later
    store_spans(store, _messages(second), second_stored)
    before = _map(settings, lo, hi)
    expected = truth(everything, lo, hi)
    _check(before, expected, "parents stored, not rolled yet: their windows read raw")
    assert before["sources"]["rollup"] is None or before["sources"]["rollup"]["windows_read_raw"] > 0
    assert before["sources"]["raw"], before["sources"]

    _roll_all(store, settled(store, second_stored))
    after = _map(settings, lo, hi)
    _check(after, expected, "parents rolled")
    assert after["sources"]["raw"] == [] and after["sources"]["rollup"]["windows_read_raw"] == 0
    assert {e["callee_kind"] for e in after["edges"]} == {"service", "database", "external"}
    assert set(expected) == {("gateway", "orders", "service"), ("orders", "billing", "service"),
                             ("orders", "postgresql", "database"), ("billing", "stripe", "external")}
    nodes = {n["name"]: n for n in after["nodes"]}
    assert {name: n["kind"] for name, n in nodes.items()} == {
        "gateway": "service", "orders": "service", "billing": "service", "postgresql": "database",
        "stripe": "external"}
    assert nodes["stripe"]["requests"] == expected[("billing", "stripe", "external")]["calls"]

    # Whole hours come from hourly documents, with the same numbers.
    hourly = _map(settings, hour - HOUR_MS, hour + HOUR_MS)
    assert "1h" in hourly["sources"]["rollup"]["tiers"]
    _check(hourly, truth(everything, hour - HOUR_MS, hour + HOUR_MS), "hourly")

    # Jaeger's and Zipkin's dependencies answer from the same map.
    client = create_app(settings).test_client()
    lookback = hi - lo
    jaeger = client.get(f"/api/dependencies?endTs={hi}&lookback={lookback}").get_json()["data"]
    zipkin = client.get(f"/api/v2/dependencies?endTs={hi}&lookback={lookback}").get_json()
    calls = {(c, e): v["calls"] for (c, e, _), v in expected.items()}
    assert {(d["parent"], d["child"]): d["callCount"] for d in jaeger} == calls
    assert {(d["parent"], d["child"]): (d["callCount"], d["errorCount"]) for d in zipkin} == {
        (c, e): (v["calls"], v["errors"]) for (c, e, _), v in expected.items()}


def test_the_edge_mark_moves_and_progress_is_its_own(namespace: Settings, store: SearchStore) -> None:
    settings = namespace.replace(**FAST)
    store = open_store(settings)
    first, _, _ = generate(floor_to(now_ms() - 2 * HOUR_MS, MINUTE_MS), seed=3)
    stored_at = now_ms() - 20 * MINUTE_MS
    store_spans(store, _messages(first[:200]), stored_at)
    result = job.roll_due(store, settled(store, stored_at), kind=edges.EDGES_KIND)
    assert result.windows and result.documents > 0
    assert job.get_mark(store, edges.PROGRESS_ID) == result.mark_ms
    assert job.get_mark(store) is None  # the request statistics' mark is another one
