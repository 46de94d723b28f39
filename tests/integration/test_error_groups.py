"""Error groups on the real engine: the `new_group` flag at ingest, and the counts of /query/errors exact against
raw logs over 1-hour and 7-day ranges, with logs stored late, before and after the error rollups take them in."""

from __future__ import annotations

import random
import time
from collections import Counter

import orjson

from panopticon.api import create_app
from panopticon.kafka import ensure_topics
from panopticon.model.times import iso_to_ms, now_ms
from panopticon.processing.outbox import Outbox
from panopticon.processing.schemas import Decoded, decode_log
from panopticon.processing.tasks import index_batch
from panopticon.rollup import errors as rollups
from panopticon.rollup import job
from panopticon.rollup.errors import ERRORS_KIND
from panopticon.rollup.job import DAY_MS
from panopticon.rollup.windows import HOUR_MS, MINUTE_MS, floor_to
from panopticon.settings import Settings
from panopticon.storage import LOGS, SearchStore, open_store
from tests.integration.test_rollup import settled
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


# --- counts: exact against raw, late logs included ---------------------------------------------------------
FAST = dict(bulk_task_timeout_seconds=4, search_timeout_seconds=2, rollup_settle_seconds=7, redis_host=None,
            rollup_max_windows_per_run=10_000)
MESSAGES = ["User {n} not found", "Timeout after {n}s calling payments at 10.0.3.{m}:8443",
            "card {n} declined by issuer", "lock wait timeout on row {n}", "cannot open /data/t/{n}/a.csv"]


def make_errors(count: int, start_ms: int, end_ms: int, *, seed: int, first_id: int, bursts: int = 40) -> list[bytes]:
    """Error logs in `bursts` short incidents over [start_ms, end_ms): five kinds of message, two services, two
    environments, some with a trace id and an endpoint."""
    rng = random.Random(seed)
    incidents = [rng.randrange(start_ms, end_ms - 5 * MINUTE_MS) for _ in range(bursts)]
    out = []
    for i in range(count):
        at = rng.choice(incidents) + rng.randrange(0, 5 * MINUTE_MS)
        n = first_id + i
        body = {"event_id": f"err-{n}", "timestamp": at, "service_name": rng.choice(["checkout", "billing"]),
                "environment": rng.choice(["production", "staging"]), "level": rng.choice(["ERROR", "FATAL"]),
                "message": rng.choice(MESSAGES).format(n=rng.randrange(1, 10_000), m=rng.randrange(1, 250)),
                "attributes": {"http.route": rng.choice(["/pay", "/cart"])} if i % 2 else {}}
        if i % 3:
            body["trace_id"] = f"trace-{n}"
        out.append(orjson.dumps(body))
    return out


def store_logs(store: SearchStore, messages: list[bytes], now_ms: int) -> list[dict]:
    """Decode as the worker does and create in logs-apm, `now_ms` as the time they were stored."""
    decoded = [decode_log(raw, topic="t", partition=0, offset=n, now_ms=now_ms) for n, raw in enumerate(messages)]
    assert all(isinstance(d, Decoded) for d in decoded), [d for d in decoded if not isinstance(d, Decoded)][:3]
    for start in range(0, len(decoded), 2000):
        chunk = decoded[start:start + 2000]
        results = store.create_many(LOGS, [(d.doc_id, orjson.dumps(d.document)) for d in chunk])
        assert all(r.status == 201 for r in results), [r for r in results if r.status != 201][:3]
    store.refresh(store.name(LOGS))
    return [d.document for d in decoded]


def truth(documents: list[dict], start_ms: int, end_ms: int, **where: str) -> dict[str, int]:
    """{fingerprint: count} of the error logs in [start_ms, end_ms) matching `where`, counted here."""
    out: Counter[str] = Counter()
    for d in documents:
        if start_ms <= iso_to_ms(d["@timestamp"]) < end_ms and all(d[k] == v for k, v in where.items()):
            out[d["fingerprint"]] += 1
    return dict(out)


def _groups(settings: Settings, query: str) -> dict:
    client = create_app(settings).test_client()
    items, cursor, answer = [], None, None
    while True:  # every page, small ones, so paging is checked too
        response = client.get(f"/query/errors?{query}&limit=3" + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        items += answer["items"]
        cursor = answer["next_cursor"]
        if cursor is None:
            return {**answer, "items": items}


def _counts(answer: dict) -> dict[str, int]:
    assert len({row["fingerprint"] for row in answer["items"]}) == len(answer["items"]) == answer["total"]
    for row in answer["items"]:
        assert sum(b["count"] for b in row["trend"]) == row["count"], "the trend adds up to the count"
    return {row["fingerprint"]: row["count"] for row in answer["items"]}


def test_group_counts_are_exact_over_1h_and_7d_with_late_logs(namespace: Settings, store: SearchStore) -> None:
    settings = namespace.replace(**FAST)
    store = open_store(settings)
    now = now_ms()
    start = floor_to(now - 7 * DAY_MS + HOUR_MS, MINUTE_MS)
    old_end = now - 2 * HOUR_MS
    on_time = old_end + MINUTE_MS
    documents = store_logs(store, make_errors(2500, start, old_end, seed=1, first_id=0), on_time)
    documents += store_logs(store, make_errors(300, now - 50 * MINUTE_MS, now - MINUTE_MS, seed=2, first_id=10_000,
                                               bursts=5), on_time)
    for _ in range(3):
        job.roll_due(store, settled(store, now), kind=ERRORS_KIND)
    assert rollups.mark(store) is not None
    # Stored now, for windows rolled long ago: these must be counted before and after the next rolls.
    # The busiest hour, days ago, gets both logs rolled on time and late ones, the late ones in minutes of their
    # own, so that some of the hour is still read from rollups whatever the clock says.
    hours = Counter(floor_to(iso_to_ms(d["@timestamp"]), HOUR_MS) for d in documents)
    hour = max((h for h in hours if h < now - DAY_MS), key=hours.__getitem__)
    late_minute = free_stretch(documents, hour, minutes=5)
    spread = [raw for raw in make_errors(400, start, old_end, seed=3, first_id=20_000, bursts=10)
              if not hour <= orjson.loads(raw)["timestamp"] < hour + HOUR_MS]
    late = store_logs(store, spread + make_errors(50, late_minute, late_minute + 5 * MINUTE_MS + 1, seed=4,
                                                  first_id=30_000, bursts=1), now_ms())
    documents += late

    end = now_ms()
    ranges = {"7d": (floor_to(end - 7 * DAY_MS + MINUTE_MS, MINUTE_MS), end),
              "1h, days ago": (hour, hour + HOUR_MS), "last 1h": (end - HOUR_MS, end)}
    late_in = {name: len(truth(late, a, b)) for name, (a, b) in ranges.items()}
    assert late_in["7d"] > 0
    for phase in ("before", "after"):
        if phase == "after":
            time.sleep(settings.settle_seconds + 1)
            for _ in range(2):  # within two runs of settling
                job.roll_due(store, kind=ERRORS_KIND)
        for name, (a, b) in ranges.items():
            for where, query in (({}, ""), ({"service_name": "checkout"}, "&service=checkout"),
                                 ({"environment": "staging", "service_name": "billing"},
                                  "&service=billing&environment=staging")):
                expected = truth(documents, _minute(a), _minute_up(b), **where)
                answer = _groups(settings, f"start={a}&end={b}{query}")
                label = f"{phase} / {name} / {where}"
                assert _counts(answer) == expected, label
                raw_only = _groups(settings.replace(rollup_enabled=False), f"start={a}&end={b}{query}")
                assert _counts(raw_only) == expected, label
                assert [r["trend"] for r in answer["items"]] == [r["trend"] for r in raw_only["items"]], label
                sources = answer["sources"]
                if name != "last 1h":
                    assert sources["rollup"] is not None and sources["rollup"]["documents"] > 0, label
                if name == "7d":
                    if phase == "before" and not where:
                        assert sources["late_logs"] == sum(truth(late, *sources_range(sources)).values()) > 0, label
                        assert sources["rollup"]["windows_read_raw"] > 0, label
                    if phase == "after":
                        assert sources["late_logs"] == 0 and sources["rollup"]["windows_read_raw"] == 0, label


def free_stretch(documents: list[dict], hour: int, *, minutes: int) -> int:
    """The first minute of `hour` that starts `minutes` minutes holding none of `documents`."""
    taken = {_minute(iso_to_ms(d["@timestamp"])) for d in documents}
    for first in range(hour, hour + HOUR_MS - minutes * MINUTE_MS + 1, MINUTE_MS):
        if not any(first + n * MINUTE_MS in taken for n in range(minutes)):
            return first
    raise AssertionError(f"no {minutes} free minutes in the hour at {hour}: the test data is too dense")


def sources_range(sources: dict) -> tuple[int, int]:
    return iso_to_ms(sources["rollup"]["from"]), iso_to_ms(sources["rollup"]["to"])


def _minute(ms: int) -> int:
    return floor_to(ms, MINUTE_MS)


def _minute_up(ms: int) -> int:
    return -floor_to(-ms, MINUTE_MS)


def test_first_seen_is_ever_and_the_detail_lists_occurrences(namespace: Settings, store: SearchStore) -> None:
    settings = namespace.replace(**FAST)
    store = open_store(settings)
    now = now_ms()
    old = store_logs(store, [_log("old-1", "User 5 not found", at=now - 3 * DAY_MS)], now - 3 * DAY_MS + MINUTE_MS)
    job.roll_due(store, settled(store, now), kind=ERRORS_KIND)
    recent = store_logs(store, [_log(f"r-{n}", f"User {n} not found", at=now - 10 * MINUTE_MS + n * 1000)
                                for n in range(4)] + [_log("fresh-1", "disk 3 full", at=now - 5 * MINUTE_MS)], now)
    answer = _groups(settings, "start=1h")
    rows = {row["fingerprint"]: row for row in answer["items"]}
    known, fresh = old[0]["fingerprint"], recent[-1]["fingerprint"]
    assert recent[0]["fingerprint"] == known
    assert rows[known]["count"] == 4 and rows[known]["first_seen"] == old[0]["@timestamp"]
    assert rows[known]["new"] is False and rows[fresh]["new"] is True
    assert rows[known]["last_seen"] == recent[3]["@timestamp"]
    assert rows[known]["message"] == "User 3 not found", "the newest message represents the group"

    client = create_app(settings).test_client()
    detail = client.get(f"/query/errors/{known}?start=1h&limit=2").get_json()
    assert detail["count"] == 4 and [o["id"] for o in detail["occurrences"]] == ["r-3", "r-2"]
    assert all(o["fingerprint"] == known for o in detail["occurrences"])
    assert client.get(f"/query/errors/{known}?start=2h&end=90m").status_code == 404
    bad = client.get("/query/errors/not-a-fingerprint").get_json()
    assert bad["error"]["parameter"] == "fingerprint"
    by_first = _groups(settings, "start=1h&sort=first_seen&order=asc")["items"]
    assert [r["fingerprint"] for r in by_first] == [known, fresh]
