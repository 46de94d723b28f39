"""Contract of the storage door, against the real engine.

`make test` runs it on the stack's OpenSearch; `make test-elasticsearch` runs it on the Elasticsearch 9
of `infra/elasticsearch.sh` (Maven Central's integ-test zip). That build has no data streams module
(no `_data_stream` API) and no ILM, so `ensure_setup` cannot run there: the set-up tests are skipped,
one test checks that set-up fails clearly instead, and the write/read tests run on the same templates
and mappings with the logs/traces streams as plain indices (bulk `create` answers 201/409 alike).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from panopticon.exceptions import EngineRejected, EngineUnavailable, StorageError
from panopticon.model.times import iso_ms
from panopticon.settings import Settings
from panopticon.storage import (
    ALERTS,
    EDGES,
    ERROR_GROUPS,
    ERRORS,
    LOGS,
    METRICS,
    STATE,
    TRACES,
    SearchStore,
    open_store,
    templates,
)


def _has_data_streams(store: SearchStore) -> bool:
    """False on a node that answers "no handler found" for the data streams API."""
    try:
        store.transport.request("GET", f"/_data_stream/{store.name(TRACES)}")
    except EngineRejected as exc:
        if exc.status == 400 and "no handler found" in str(exc):
            return False
        if exc.status != 404:  # 404: the API exists, the stream does not (yet)
            raise
    return True


def _needs_data_streams(store: SearchStore) -> None:
    if not _has_data_streams(store):
        pytest.skip("elasticsearch 9 integ-test zip has no data streams module")


@pytest.fixture
def store(namespace: Settings) -> Iterator[SearchStore]:
    """`ensure_setup` where the engine has data streams; else the same templates minus data streams and ILM."""
    s = open_store(namespace)
    if _has_data_streams(s):
        s.ensure_setup()
    else:
        for name, body in templates.index_templates(namespace, "opensearch").items():  # names no ILM policy
            body.pop("data_stream", None)
            s.transport.request("PUT", f"/_index_template/{name}", body=body)
        s.transport.request("PUT", f"/{s.name(STATE)}", body={"mappings": templates.STATE_MAPPINGS})
    yield s
    s.close()


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
    _needs_data_streams(store)
    for stream in (LOGS, TRACES):
        answer = store.transport.request("GET", f"/_data_stream/{store.name(stream)}")
        assert [d["name"] for d in answer["data_streams"]] == [store.name(stream)]
    templates = store.transport.request("GET", f"/_index_template/{store.settings.index_prefix}*")
    names = {t["name"] for t in templates["index_templates"]}
    assert names == {store.name(LOGS), store.name(TRACES), store.name(METRICS), store.name(EDGES),
                     store.name(ERRORS)}
    for index in (STATE, ERROR_GROUPS, ALERTS):
        assert store.transport.request("GET", f"/{store.name(index)}/_mapping"), index


def test_setup_adds_new_fields_to_a_data_stream_made_before_them(store: SearchStore) -> None:
    """A logs-apm made by an earlier version (no error-group fields, strict, every field indexed the default way,
    refreshed every second) takes ERROR logs after set-up, keeps its fields as they were, and is refreshed as
    SEARCH_REFRESH_INTERVAL_MS says."""
    _needs_data_streams(store)
    old = store.settings.replace(index_prefix=store.settings.index_prefix + "old-", search_refresh_interval_ms=300)
    before = open_store(old)
    try:
        mappings = {k: _indexed_the_default_way(v) for k, v in templates.LOGS_MAPPINGS["properties"].items()
                    if k not in ("fingerprint", "error_type", "endpoint", "new_group")}
        assert mappings["event_id"] != templates.LOGS_MAPPINGS["properties"]["event_id"]
        before.transport.request("PUT", f"/_index_template/{before.name(LOGS)}", body={
            "index_patterns": [f"{before.name(LOGS)}*"], "data_stream": {}, "priority": 200,
            "template": {"settings": {"refresh_interval": "1s"},
                         "mappings": {"dynamic": "strict", "properties": mappings}}})
        before.transport.request("PUT", f"/_data_stream/{before.name(LOGS)}")
        before.ensure_setup()
        document = {"@timestamp": "2026-01-01T00:00:00.000Z", "level": "ERROR", "fingerprint": "0123456789abcdef",
                    "new_group": True, "error_type": "KeyError", "endpoint": "GET /x", "event_id": "e1"}
        results = before.create_many(LOGS, [("e1", orjson.dumps(document))])
        assert results[0].status == 201, results
        backing = before.transport.request("GET", f"/{before.name(LOGS)}/_mapping")
        [(_index, found)] = backing.items()
        assert found["mappings"]["properties"]["event_id"] == {"type": "keyword", "ignore_above": 1024}
        assert found["mappings"]["properties"]["new_group"] == templates.LOGS_MAPPINGS["properties"]["new_group"]
        settings = before.transport.request("GET", f"/{before.name(LOGS)}/_settings")
        assert [s["settings"]["index"]["refresh_interval"] for s in settings.values()] == ["300ms"]
    finally:
        before.delete_namespace()
        before.close()


def _indexed_the_default_way(spec: dict) -> dict:
    """`spec` without the choices of what to index (as the mappings were before they made them)."""
    out = {k: v for k, v in spec.items() if k not in ("index", "doc_values", "index_options", "norms")}
    if "properties" in out:
        out["properties"] = {k: _indexed_the_default_way(v) for k, v in out["properties"].items()}
    return out


def test_setup_twice_is_harmless(store: SearchStore) -> None:
    _needs_data_streams(store)
    store.ensure_setup()
    store.ensure_setup()
    answer = store.transport.request("GET", f"/_data_stream/{store.name(TRACES)}")
    assert len(answer["data_streams"]) == 1


def test_setup_succeeds_or_says_what_the_engine_lacks(store: SearchStore) -> None:
    if _has_data_streams(store):
        store.ensure_setup()  # the engines we support: no error
        return
    # The Elasticsearch integ-test zip (make test-elasticsearch) has neither ILM nor data streams.
    with pytest.raises(StorageError, match="has no ILM API"):
        store.ensure_setup()
    with pytest.raises(StorageError, match="has no data streams API"):
        store._ensure_data_stream(store.name(TRACES))


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
    assert store.search(store.name(TRACES), {})["hits"]["total"]["value"] == 1000  # an empty body is a body


def test_stored_times_parse_by_the_fixed_pattern_and_queries_keep_every_form(store: SearchStore) -> None:
    """The date format's first pattern is iso_ms's; a time without milliseconds, with an offset or in epoch
    milliseconds still selects, and what the engine prints back (doc values, histogram keys) is iso_ms's text."""
    at = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
    doc_id, body = _span(1)
    doc = orjson.loads(body) | {"@timestamp": iso_ms(at)}
    assert [i.status for i in store.create_many(TRACES, [(doc_id, orjson.dumps(doc))])] == [201]
    late = orjson.loads(_span(2)[1]) | {"@timestamp": "2026-01-01T00:00:00Z"}  # a writer without iso_ms
    assert [i.status for i in store.create_many(TRACES, [("t:late", orjson.dumps(late))])] == [201]
    bad = orjson.loads(_span(3)[1]) | {"@timestamp": "2026-02-30T00:00:00.000Z"}
    (rejected,) = store.create_many(TRACES, [("t:bad", orjson.dumps(bad))])
    assert rejected.status == 400 and not rejected.transient
    store.refresh(store.name(TRACES))

    def ids(gte: object, lt: object) -> list[str]:
        body = {"query": {"range": {"@timestamp": {"gte": gte, "lt": lt}}}}
        return sorted(h["_id"] for h in store.search(store.name(TRACES), body)["hits"]["hits"])

    assert ids("2026-01-01T00:00:00.100Z", "2026-01-01T00:00:00.200Z") == [doc_id]
    assert ids("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z") == sorted([doc_id, "t:late"])
    assert ids(at, at + 1) == [doc_id]
    assert ids("2026-01-01T01:00:00.100+01:00", "2026-01-01T01:00:00.200+01:00") == [doc_id]
    body = {"query": {"ids": {"values": [doc_id]}}, "docvalue_fields": ["@timestamp"],
            "aggs": {"m": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}}}}
    answer = store.search(store.name(TRACES), body)
    assert answer["hits"]["hits"][0]["fields"]["@timestamp"] == [iso_ms(at)]
    assert [b["key_as_string"] for b in answer["aggregations"]["m"]["buckets"]] == [iso_ms(at - 123)]


def test_create_unstored_answers_only_for_what_it_did_not_create(store: SearchStore) -> None:
    """Positions are counted across requests: 0.1 MB requests hold about 230 of these spans, so 1,200 take 6."""
    small = open_store(store.settings.replace(bulk_max_request_mb=0.1))
    items = [_span(i) for i in range(1200)]
    assert small.create_unstored(TRACES, items[:400]) == []
    doc_id, body = items[777]
    bad = orjson.loads(body)
    bad["duration_ms"] = "not a number"
    items[777] = (doc_id, orjson.dumps(bad))
    unstored = small.create_unstored(TRACES, items[300:])
    assert [(position, item.doc_id, item.status) for position, item in unstored if item.status == 409] == [
        (i - 300, items[i][0], 409) for i in range(300, 400)]
    ((position, item),) = [(position, item) for position, item in unstored if item.status != 409]
    assert (position, item.doc_id, item.status, item.transient) == (777 - 300, doc_id, 400, False)
    store.refresh(store.name(TRACES))
    assert store.count(store.name(TRACES)) == 1199


def test_malformed_document_is_a_permanent_item_error(store: SearchStore) -> None:
    doc_id, body = _span(1)
    bad = orjson.loads(body)
    bad["duration_ms"] = "not a number"
    (item,) = store.create_many(TRACES, [(doc_id, orjson.dumps(bad))])
    assert item.status == 400 and not item.stored and not item.transient
    # OpenSearch keeps the old name; Elasticsearch 8.8+ says document_parsing_exception.
    assert item.error_type in ("mapper_parsing_exception", "document_parsing_exception")


def test_engine_error_maps_to_project_exception(store: SearchStore) -> None:
    with pytest.raises(EngineRejected) as caught:
        store.search(store.name(TRACES), {"query": {"no_such_query": {}}})
    assert caught.value.status == 400
    with pytest.raises(EngineRejected) as caught:
        store.transport.request("GET", f"/{store.name(METRICS)}-none/_doc/x")
    assert caught.value.status == 404
    assert store.get(store.name(STATE), "no-such-id") is None


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_unreachable_engine_is_engine_unavailable(namespace, engine: str) -> None:
    settings = namespace.replace(elasticsearch_node="http://127.0.0.1:1", search_engine=engine,
                                 search_timeout_seconds=2)
    store = open_store(settings)
    assert store.ping() is False
    with pytest.raises(EngineUnavailable):
        store.count(store.name(TRACES))


def test_engine_is_detected_once(store: SearchStore) -> None:
    assert store.engine.name in ("opensearch", "elasticsearch")
    assert store.engine.major >= (2 if store.engine.name == "opensearch" else 8)
