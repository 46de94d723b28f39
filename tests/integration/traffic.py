"""Produce uniquely identified messages and check, id by id, what the pipeline stored."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from panopticon.kafka import common_config, producer_config
from panopticon.settings import Settings
from panopticon.storage import LOGS, TRACES, SearchStore

BAD_MESSAGES = [
    b"not json at all",
    b'{"trace_id": "x"}',
    b"[1, 2, 3]",
    b'{"service_name": 42, "timestamp": "yesterday"}',
    b"\xff\xfe\x00garbage",
]


@dataclass
class Produced:
    span_ids: set[str] = field(default_factory=set)  # span ids (unique per run)
    log_ids: set[str] = field(default_factory=set)  # event ids
    error_log_ids: set[str] = field(default_factory=set)
    bad: int = 0

    def add(self, other: Produced) -> None:
        self.span_ids |= other.span_ids
        self.log_ids |= other.log_ids
        self.error_log_ids |= other.error_log_ids
        self.bad += other.bad

    @property
    def valid(self) -> int:
        return len(self.span_ids) + len(self.log_ids)


def make_messages(run: str, count: int, bad_ratio: float = 0.01, seed: int = 7,
                  start_ms: int | None = None, step_ms: int = 1, endpoints: int = 1,
                  error_ratio: float = 0.0, first: int = 0) -> tuple[list[tuple[str, bytes]], Produced]:
    """`count` messages, half spans and half logs, `bad_ratio` of them malformed; ids carry `run`.

    Message i (from `first`, so two calls can make distinct ids) is timed `start_ms + (i - first) * step_ms`;
    spans are spread over `endpoints` names and `error_ratio` of them have status ERROR (rollup scenarios
    need more than one key per window).
    """
    rng = random.Random(seed)
    now = start_ms if start_ms is not None else int(time.time() * 1000) - 60_000
    now -= first * step_ms
    produced = Produced()
    out: list[tuple[str, bytes]] = []
    for i in range(first, first + count):
        kind = "span" if i % 2 else "log"
        if rng.random() < bad_ratio:
            out.append((kind, rng.choice(BAD_MESSAGES)))
            produced.bad += 1
            continue
        at = now + i * step_ms
        if kind == "span":
            trace, span = f"{run}-t{i // 7}", f"{run}-s{i}"
            camel = i % 4 == 1
            name = "GET /x" if endpoints == 1 else f"GET /x{i % endpoints}"
            status = "ERROR" if error_ratio and rng.random() < error_ratio else "OK"
            body = ({"traceId": trace, "spanId": span, "serviceName": f"{run}-svc", "startTime": at,
                     "durationMs": rng.lognormvariate(3, 0.5), "name": name, "kind": "SERVER",
                     "environment": "test", "status": status} if camel else
                    {"trace_id": trace, "span_id": span, "service_name": f"{run}-svc", "start_time": at,
                     "duration_ms": rng.lognormvariate(3, 0.5), "name": name, "kind": "SERVER",
                     "environment": "test", "status": status})
            produced.span_ids.add(span)
        else:
            level = "ERROR" if rng.random() < 0.1 else "INFO"
            event = f"{run}-e{i}"
            body = {"event_id": event, "timestamp": at, "service_name": f"{run}-svc", "environment": "test",
                    "level": level, "message": f"message {i}"}
            produced.log_ids.add(event)
            if level == "ERROR":
                produced.error_log_ids.add(event)
        out.append((kind, orjson.dumps(body)))
    return out, produced


def produce(settings: Settings, messages: list[tuple[str, bytes]], rate: float = 0.0) -> None:
    producer = Producer(producer_config(settings))
    topics = {"span": settings.kafka_apm_span_topic, "log": settings.kafka_apm_log_topic}
    failures: list[str] = []
    started = time.monotonic()
    for n, (kind, value) in enumerate(messages, 1):
        while True:
            try:
                producer.produce(topics[kind], value, on_delivery=lambda e, _m: e and failures.append(str(e)))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        ahead = n / rate - (time.monotonic() - started) if rate else 0
        if ahead > 0:
            time.sleep(ahead)
    assert producer.flush(60) == 0
    assert not failures, failures[:3]


def id_counts(store: SearchStore, stream: str, id_field: str) -> Counter[str]:
    """Every distinct value of `id_field` with how many documents carry it (2+ = a duplicate)."""
    index = store.name(stream)
    store.refresh(index)
    counts: Counter[str] = Counter()
    after = None
    while True:
        composite = {"size": 5000, "sources": [{"id": {"terms": {"field": id_field}}}]}
        if after:
            composite["after"] = after
        answer = store.search(index, {"size": 0, "aggs": {"ids": {"composite": composite}}})
        buckets = answer["aggregations"]["ids"]["buckets"]
        for bucket in buckets:
            counts[bucket["key"]["id"]] += bucket["doc_count"]
        after = answer["aggregations"]["ids"].get("after_key")
        if not buckets or not after:
            return counts


def wait_for_count(store: SearchStore, expected: int, timeout: float = 180.0) -> int:
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        store.refresh(f"{store.settings.index_prefix}*")
        total = store.count(store.name(TRACES)) + store.count(store.name(LOGS))
        if total >= expected:
            return total
        time.sleep(1)
    return total


def read_topic(settings: Settings, topic: str, timeout: float = 20.0) -> list:
    """Every message of a topic, from the beginning."""
    consumer = Consumer({**common_config(settings), "group.id": f"reader-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions}
    consumer.assign(partitions)
    out = []
    deadline = time.monotonic() + timeout
    position = {p: 0 for p in ends}
    while any(position[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=1):
            if message.error() is None:
                out.append(message)
                position[message.partition()] = message.offset() + 1
    consumer.close()
    return out


def check_exact(store: SearchStore, produced: Produced) -> dict[str, int]:
    """Compare id by id; returns lost / duplicated / unexpected counts (all must be 0)."""
    seen = id_counts(store, TRACES, "span_id") + id_counts(store, LOGS, "event_id")
    expected = produced.span_ids | produced.log_ids
    return {
        "produced_valid": produced.valid,
        "stored": len(seen),
        "lost": len(expected - set(seen)),
        "duplicated": sum(1 for n in seen.values() if n > 1),
        "unexpected": len(set(seen) - expected),
    }
