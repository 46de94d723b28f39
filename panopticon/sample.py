"""Realistic sample traffic: trace trees across services, with logs tied to their spans.

Pure generation (seeded, clock passed in) so tests can regenerate exactly what was produced and
compute the truth independently; `send` produces it to Kafka for `flask send-sample` and `make run`.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from panopticon.kafka import producer_config
from panopticon.model.times import iso_ms
from panopticon.settings import Settings

# service -> (endpoints with median latency in ms, downstream services it calls)
TOPOLOGY: dict[str, tuple[dict[str, float], list[str]]] = {
    "gateway": ({"GET /api/products": 40, "POST /api/checkout": 120, "GET /api/users/:id": 25},
                ["catalog", "checkout", "users"]),
    "catalog": ({"GET /products": 20, "GET /products/:id": 12}, ["inventory"]),
    "checkout": ({"POST /orders": 80}, ["payments", "inventory"]),
    "payments": ({"POST /charge": 150}, []),
    "inventory": ({"GET /stock/:sku": 8, "POST /reserve": 18}, []),
    "users": ({"GET /users/:id": 10}, []),
}
# service -> calls to things we have no spans from (a database, an external API, a queue), as OpenTelemetry
# instrumentation names them on CLIENT / PRODUCER spans: (span name, kind, median ms, attributes). The service map
# draws them as nodes of their own.
PEERS: dict[str, list[tuple[str, str, float, dict[str, Any]]]] = {
    "inventory": [("SELECT stock", "CLIENT", 3, {"db.system": "postgresql", "db.name": "inventory"})],
    "payments": [("POST /v1/charges", "CLIENT", 90, {"peer.service": "stripe", "server.address": "api.stripe.com"})],
    "checkout": [("orders publish", "PRODUCER", 2,
                  {"messaging.system": "kafka", "messaging.destination.name": "orders"})],
}
ENVIRONMENTS = ("production", "staging")
LOG_LINES = {
    "INFO": "request handled",
    "DEBUG": "cache lookup",
    "WARN": "slow downstream call",
    "ERROR": "upstream call failed",
}


@dataclass(frozen=True)
class SampleMessage:
    kind: str  # "span" or "log"
    body: dict[str, Any]

    def encode(self) -> bytes:
        return orjson.dumps(self.body)


class TraceFactory:
    def __init__(self, rng: random.Random, error_ratio: float, latency_sigma: float,
                 services: dict[str, tuple[dict[str, float], list[str]]],
                 peers: dict[str, list[tuple[str, str, float, dict[str, Any]]]] | None = None) -> None:
        self.rng = rng
        self.peers = PEERS if peers is None else peers
        self.error_ratio = error_ratio
        self.sigma = latency_sigma
        self.services = services

    def _id(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _latency(self, median: float) -> float:
        return round(median * math.exp(self.rng.gauss(0, self.sigma)), 3)

    def trace(self, start_ms: float, root_service: str) -> list[SampleMessage]:
        env = ENVIRONMENTS[0] if self.rng.random() < 0.8 else ENVIRONMENTS[1]
        out: list[SampleMessage] = []
        self._server_span(out, self._id(128), None, root_service, env, start_ms, depth=0)
        return out

    def _server_span(self, out: list[SampleMessage], trace_id: str, parent_id: str | None, service: str, env: str,
                     start_ms: float, depth: int) -> tuple[float, bool]:
        endpoints, downstream = self.services[service]
        route = self.rng.choice(list(endpoints))
        duration = self._latency(endpoints[route])
        span_id = self._id(64)
        failed = self.rng.random() < self.error_ratio
        child_start = start_ms + duration * 0.1
        for callee in downstream if depth < 3 else []:
            if self.rng.random() < 0.6:
                client_id = self._id(64)
                callee_ms, callee_failed = self._server_span(
                    out, trace_id, client_id, callee, env, child_start + 0.5, depth + 1)
                client_ms = round(callee_ms + 1.0, 3)
                out.append(self._span(trace_id, client_id, span_id, service, env, f"call {callee}", "CLIENT",
                                      "ERROR" if callee_failed else "OK", child_start, client_ms, None))
                child_start += client_ms
        for name, kind, median, attributes in self.peers.get(service, []):
            if self.rng.random() < 0.7:
                peer_ms = self._latency(median)
                peer_failed = self.rng.random() < self.error_ratio
                out.append(self._span(trace_id, self._id(64), span_id, service, env, name, kind,
                                      "ERROR" if peer_failed else "OK", child_start, peer_ms, None, attributes))
                child_start += peer_ms
        method, path = route.split(" ", 1)
        status_code = self.rng.choice((500, 502, 503)) if failed else 200
        http = {"method": method, "route": path, "status_code": status_code}
        out.append(self._span(trace_id, span_id, parent_id, service, env, route, "SERVER",
                              "ERROR" if failed else "OK", start_ms, duration, http))
        out.append(self._log(trace_id, span_id, service, env, start_ms + duration, "ERROR" if failed else "INFO"))
        if self.rng.random() < 0.2:
            out.append(self._log(trace_id, span_id, service, env, start_ms + 1, "DEBUG"))
        return duration, failed

    def _span(self, trace_id: str, span_id: str, parent_id: str | None, service: str, env: str, name: str, kind: str,
              status: str, start_ms: float, duration: float, http: dict[str, Any] | None,
              attributes: dict[str, Any] | None = None) -> SampleMessage:
        # Half the spans use the camelCase spelling, as the original TypeScript producers did.
        body: dict[str, Any]
        if self.rng.random() < 0.5:
            body = {"traceId": trace_id, "spanId": span_id, "parentSpanId": parent_id, "serviceName": service,
                    "environment": env, "name": name, "kind": kind, "status": status,
                    "startTime": int(start_ms), "durationMs": duration}
        else:
            body = {"trace_id": trace_id, "span_id": span_id, "parent_span_id": parent_id,
                    "service_name": service, "environment": env, "name": name, "kind": kind, "status": status,
                    "start_time": iso_ms(start_ms), "duration_ms": duration}
        if http:
            body["http"] = http
        body["attributes"] = {"sample": True, **(attributes or {})}
        return SampleMessage("span", body)

    def _log(self, trace_id: str, span_id: str, service: str, env: str, at_ms: float, level: str) -> SampleMessage:
        return SampleMessage("log", {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128))),
            "timestamp": iso_ms(at_ms), "service_name": service, "environment": env, "level": level,
            "message": f"{LOG_LINES[level]} in {service}", "trace_id": trace_id, "span_id": span_id,
        })


def generate(count: int, *, seed: int | None = None, error_ratio: float = 0.05, latency_sigma: float = 0.6,
             start_ms: float | None = None, spread_ms: float = 0.0, kind: str = "both",
             services: dict[str, tuple[dict[str, float], list[str]]] | None = None,
             ) -> Iterator[SampleMessage]:
    """`count` traces starting at `start_ms` (default now), spread evenly over `spread_ms`."""
    rng = random.Random(seed)
    factory = TraceFactory(rng, error_ratio, latency_sigma, services or TOPOLOGY)
    roots = [s for s in factory.services if s == "gateway"] or list(factory.services)
    begin = time.time() * 1000 if start_ms is None else start_ms
    for i in range(count):
        at = begin + (spread_ms * i / count if count else 0)
        for message in factory.trace(at, rng.choice(roots)):
            if kind == "both" or message.kind == kind:
                yield message


def send(settings: Settings, messages: Iterator[SampleMessage], *, rate: float = 0.0,
         progress: Callable[[int], None] | None = None) -> int:
    """Produce messages (at most `rate` per second when > 0); returns how many were acknowledged."""
    producer = Producer(producer_config(settings))
    topics = {"span": settings.kafka_apm_span_topic, "log": settings.kafka_apm_log_topic}
    failures: list[str] = []
    sent = 0
    started = time.monotonic()

    def delivered(error: KafkaError | None, _message: Message | None) -> None:
        if error is not None:
            failures.append(str(error))

    for message in messages:
        while True:
            try:
                producer.produce(topics[message.kind], message.encode(), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        producer.poll(0)
        if progress and sent % 500 == 0:
            progress(500)
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    remaining = producer.flush(60)
    if remaining:
        failures.append(f"{remaining} messages still queued after 60 s")
    if progress:
        progress(sent % 500)
    if failures:
        raise RuntimeError(f"{len(failures)} sample messages were not delivered: {failures[0]}")
    return sent
