"""Error groups on the real engine: the `new_group` flag at ingest, and the counts of /query/errors exact against
raw logs over 1-hour and 7-day ranges, with logs stored late, before and after the error rollups take them in."""

from __future__ import annotations

import time

import orjson

from panopticon.kafka import ensure_topics
from panopticon.processing.outbox import Outbox
from panopticon.processing.tasks import index_batch
from panopticon.settings import Settings
from panopticon.storage import LOGS, SearchStore
from tests.integration.traffic import read_topic


def _log(event: str, message: str, service: str = "checkout", at: int | None = None, level: str = "ERROR") -> bytes:
    return orjson.dumps({"event_id": event, "timestamp": at or int(time.time() * 1000), "service_name": service,
                         "environment": "prod", "level": level, "message": message})


def _stored(store: SearchStore) -> dict[str, dict]:
    store.refresh(store.name(LOGS))
    answer = store.search(store.name(LOGS), {"size": 1000, "query": {"match_all": {}}})
    return {hit["_id"]: hit["_source"] for hit in answer["hits"]["hits"]}


def test_the_first_log_of_a_group_is_stored_and_forwarded_as_new_once(namespace: Settings,
                                                                       store: SearchStore) -> None:
    ensure_topics(namespace, [namespace.kafka_apm_log_error_topic, namespace.kafka_apm_dlq_topic])
    outbox = Outbox(namespace)
    run = namespace.index_prefix

    def batch(records: list[bytes], first_offset: int, replay: bool = False) -> None:
        index_batch(store, outbox, "logs", namespace.kafka_apm_log_topic,
                    [(0, first_offset + n, raw) for n, raw in enumerate(records)], max_retries=2,
                    max_message_bytes=1 << 20, replay=replay)

    first = [_log(f"{run}a1", "User 1 not found"), _log(f"{run}i1", "fine", level="INFO"),
             _log(f"{run}a2", "User 2 not found")]
    batch(first, 0)
    batch([_log(f"{run}a3", "User 3 not found"), _log(f"{run}b1", "card 77 declined", level="FATAL"),
           _log(f"{run}c1", "User 4 not found", service="billing")], 10)
    batch(first, 0, replay=True)  # the same records again: nothing changes its mind

    stored = _stored(store)
    flags = {doc_id.removeprefix(run): doc.get("new_group") for doc_id, doc in stored.items()}
    assert flags == {"a1": True, "a2": False, "a3": False, "b1": True, "c1": True, "i1": None}
    assert len({stored[f"{run}a{n}"]["fingerprint"] for n in (1, 2, 3)}) == 1
    assert stored[f"{run}c1"]["fingerprint"] != stored[f"{run}a1"]["fingerprint"], "another service, another group"

    forwarded = [orjson.loads(m.value()) for m in read_topic(namespace, namespace.kafka_apm_log_error_topic)]
    by_id: dict[str, set] = {}
    for doc in forwarded:
        by_id.setdefault(doc["event_id"].removeprefix(run), set()).add(doc["new_group"])
    assert by_id == {"a1": {True}, "a2": {False}, "a3": {False}, "b1": {True}, "c1": {True}}, "the replay agrees"
