"""Trace tree ordering and summary, including broken traces."""

from __future__ import annotations

from panopticon.query.traces import order_tree, summarize


def span(span_id: str, parent: str | None, start: str, *, service: str = "a", error: bool = False) -> dict:
    return {"span_id": span_id, "parent_span_id": parent, "start_time": f"2024-05-01T12:00:{start}Z",
            "end_time": f"2024-05-01T12:00:{start}Z", "service_name": service, "is_error": error,
            "duration_ms": 1.0}


def ids(spans: list[dict]) -> list[tuple[str, int]]:
    return [(s["span_id"], s["depth"]) for s in spans]


def test_parent_before_children_siblings_by_start() -> None:
    spans = [span("c2", "root", "03.000"), span("g1", "c1", "02.500"), span("c1", "root", "02.000"),
             span("root", None, "01.000"), span("c3", "root", "02.500")]
    assert ids(order_tree(spans)) == [("root", 0), ("c1", 1), ("g1", 2), ("c3", 1), ("c2", 1)]


def test_orphans_become_roots_placed_by_start_time() -> None:
    spans = [span("orphan", "gone", "00.500"), span("root", None, "01.000"), span("kid", "orphan", "00.700")]
    assert ids(order_tree(spans)) == [("orphan", 0), ("kid", 1), ("root", 0)]
    assert summarize(spans, [])["missing_parents"] == ["orphan"]


def test_cycles_and_self_parents_are_listed_not_lost() -> None:
    spans = [span("a", "b", "01.000"), span("b", "a", "02.000"), span("self", "self", "03.000")]
    ordered = order_tree(spans)
    assert sorted(s["span_id"] for s in ordered) == ["a", "b", "self"]


def test_summary() -> None:
    spans = [span("root", None, "01.000", service="gw"), span("x", "root", "01.250", service="db", error=True)]
    spans[1]["end_time"] = "2024-05-01T12:00:01.500Z"
    summary = summarize(spans, [{"id": "l1"}])
    assert summary["duration_ms"] == 500.0
    assert summary["services"] == ["db", "gw"]
    assert (summary["span_count"], summary["log_count"], summary["error_count"]) == (2, 1, 1)
    assert summary["root_span_ids"] == ["root"] and summary["missing_parents"] == []
