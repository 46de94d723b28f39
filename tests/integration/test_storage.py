"""Contract of the storage door, against the real engine."""

from __future__ import annotations

import orjson
import pytest

from panopticon.exceptions import EngineRejected, EngineUnavailable
from panopticon.storage import LOGS, METRICS, TRACES, SearchStore, open_store


def _span(i: int) -> tuple[str, bytes]:
    doc = {
        "@timestamp": "2026-01-01T00:00:00.000Z", "trace_id": f"trace-{i // 10}", "span_id": f"span-{i}",
        "parent_span_id": None, "service_name": "svc", "environment": "test", "name": "GET /x", "kind": "SERVER",
        "status": "OK", "start_time": "2026-01-01T00:00:00.000Z", "end_time": "2026-01-01T00:00:00.010Z",
        "duration_ms": 10.0 + i, "duration_bucket": 1, "attributes": {"free": {"form": [1, 2]}}, "is_root": True,
        "is_request": True, "is_error": False, "endpoint": "GET /x", "ingested_at": "2026-01-01T00:00:01.000Z",
    }
    return f"trace-{i // 10}:span-{i}", orjson.dumps(doc)


def test_setup_creates_templates_and_data_streams(store: SearchStore) -> None:
    for stream in (LOGS, TRACES):
        answer = store.transport.request("GET", f"/_data_stream/{store.name(stream)}")
        assert [d["name"] for d in answer["data_streams"]] == [store.name(stream)]
    templates = store.transport.request("GET", f"/_index_template/{store.settings.index_prefix}*")
    names = {t["name"] for t in templates["index_templates"]}
    assert names == {store.name(LOGS), store.name(TRACES), store.name(METRICS)}


def test_setup_twice_is_harmless(store: SearchStore) -> None:
    store.ensure_setup()
    store.ensure_setup()
    answer = store.transport.request("GET", f"/_data_stream/{store.name(TRACES)}")
    assert len(answer["data_streams"]) == 1


def test_bulk_of_1000_is_searchable_and_replay_creates_nothing(store: SearchStore) -> None:
    items = [_span(i) for i in range(1000)]
    first = store.create_many(TRACES, items)
    assert [i.status for i in first] == [201] * 1000
    store.refresh(store.name(TRACES))
    assert store.count(store.name(TRACES)) == 1000
    again = store.create_many(TRACES, items[:10])
    assert [i.status for i in again] == [409] * 10
    assert all(i.stored for i in again)
    store.refresh(store.name(TRACES))
    assert store.count(store.name(TRACES)) == 1000
    hits = store.search(store.name(TRACES), {"query": {"term": {"span_id": "span-7"}}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["trace-0:span-7"]


def test_malformed_document_is_a_permanent_item_error(store: SearchStore) -> None:
    doc_id, body = _span(1)
    bad = orjson.loads(body)
    bad["duration_ms"] = "not a number"
    (item,) = store.create_many(TRACES, [(doc_id, orjson.dumps(bad))])
    assert item.status == 400 and not item.stored and not item.transient
    assert item.error_type == "mapper_parsing_exception"


def test_engine_error_maps_to_project_exception(store: SearchStore) -> None:
    with pytest.raises(EngineRejected) as caught:
        store.search(store.name(TRACES), {"query": {"no_such_query": {}}})
    assert caught.value.status == 400


def test_unreachable_engine_is_engine_unavailable(namespace) -> None:
    settings = namespace.replace(elasticsearch_node="http://127.0.0.1:1", search_engine="opensearch",
                                 search_timeout_seconds=2)
    store = open_store(settings)
    assert store.ping() is False
    with pytest.raises(EngineUnavailable):
        store.count(store.name(TRACES))


def test_engine_is_detected_once(store: SearchStore) -> None:
    assert store.engine.name == "opensearch"
    assert store.engine.major >= 2
