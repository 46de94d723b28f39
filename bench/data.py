"""Benchmark traffic: the project's seeded sample traffic, with the document id of every message known.

Knowing each id lets the freshness probe ask the engine for exactly the documents it is waiting for,
and lets the ceiling write the very documents the pipeline writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from confluent_kafka import Producer

from panopticon import flow
from panopticon.kafka import producer_config
from panopticon.processing.decoders import decoder_for
from panopticon.processing.schemas import Decoded
from panopticon.sample import generate
from panopticon.settings import Settings


@dataclass(frozen=True, slots=True)
class Msg:
    kind: str  # "span" or "log"
    value: bytes
    doc_id: str


def _doc_id(kind: str, body: dict) -> str:
    if kind == "span":
        return f"{body.get('trace_id') or body['traceId']}:{body.get('span_id') or body['spanId']}"
    return body["event_id"]


def sample_messages(count: int, *, seed: int, error_ratio: float = 0.05, hours_back: float = 2.0) -> list[Msg]:
    """Exactly `count` messages of realistic traces (spans and logs), spread over the last `hours_back`."""
    now = time.time() * 1000
    traces = max(1, math.ceil(count / 6))
    out: list[Msg] = []
    while len(out) < count:
        for message in generate(traces, seed=seed, error_ratio=error_ratio, start_ms=now - hours_back * 3_600_000,
                                spread_ms=hours_back * 3_600_000 - 60_000):
            out.append(Msg(message.kind, message.encode(), _doc_id(message.kind, message.body)))
            if len(out) == count:
                break
        seed += 1
    return out


def documents(settings: Settings, messages: Sequence[Msg]) -> dict[str, list[tuple[str, bytes]]]:
    """The documents the worker would write for `messages`, by data stream, JSON-encoded (the ceiling's input)."""
    by_kind = {"span": flow.stream("spans"), "log": flow.stream("logs")}
    now_ms = int(time.time() * 1000)
    out: dict[str, list[tuple[str, bytes]]] = {s.data_stream: [] for s in flow.STREAMS}
    for offset, message in enumerate(messages):
        stream = by_kind[message.kind]
        (decoded,) = decoder_for(stream)(message.value, topic=stream.topic(settings), partition=0, offset=offset,
                                         now_ms=now_ms, max_bytes=settings.max_message_bytes)
        if not isinstance(decoded, Decoded):
            raise ValueError(f"sample message {message.doc_id} is not valid: {decoded.reason}")
        out[stream.data_stream].append((decoded.doc_id, orjson.dumps(decoded.document)))
    return out


def topic_of(settings: Settings, kind: str) -> str:
    return settings.kafka_apm_span_topic if kind == "span" else settings.kafka_apm_log_topic


def produce_all(settings: Settings, messages: Sequence[Msg]) -> float:
    """Produce as fast as the client allows; returns the seconds it took until every message was acked."""
    producer = Producer({**producer_config(settings), "linger.ms": 20, "batch.size": 1_000_000})
    failures: list[str] = []

    def delivered(error, _message) -> None:
        if error is not None:
            failures.append(str(error))

    started = time.monotonic()
    for message in messages:
        while True:
            try:
                producer.produce(topic_of(settings, message.kind), message.value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) or failures:
        raise RuntimeError(f"kafka did not acknowledge every message: {failures[:1]}")
    return time.monotonic() - started


def probe_log(run: str, n: int, sent_ms: int, level: str = "INFO") -> Msg:
    """A log whose timestamp is its produce time, for freshness and error-stream latency."""
    event_id = f"{run}-p{n}"
    body = {"event_id": event_id, "timestamp": sent_ms, "service_name": f"probe-{n % 20}",
            "environment": "bench", "level": level, "message": f"probe {n}",
            "attributes": {"bench_sent_ms": sent_ms}}
    return Msg("log", orjson.dumps(body), event_id)


def probe_span(run: str, n: int, sent_ms: int) -> Msg:
    trace, span = f"{run}-t{n}", f"{run}-s{n}"
    body = {"trace_id": trace, "span_id": span, "service_name": f"probe-{n % 20}", "environment": "bench",
            "name": "GET /probe", "kind": "SERVER", "status": "OK", "start_time": sent_ms, "duration_ms": 12.5,
            "http": {"method": "GET", "route": "/probe", "status_code": 200},
            "attributes": {"bench_sent_ms": sent_ms}}
    return Msg("span", orjson.dumps(body), f"{trace}:{span}")
