"""`create_otlp_app(settings)`: the OTLP/HTTP receiver, `POST /v1/traces` and `POST /v1/logs`.

What a request goes through, in order, and what the client hears at each step (OTLP/HTTP, as the SDKs
and the Collector's otlphttp exporter expect it; the answer is in the request's encoding):

    Content-Type       application/x-protobuf or application/json, else 415
    Authorization      `Bearer <token>` when API_AUTH_TOKENS is set, else 401
    body               at most OTLP_MAX_BODY_BYTES as sent and after gzip, else 413; bad gzip 400
    decode             an Export*ServiceRequest in that encoding, else 400 (google.rpc.Status, not retried)
    screen             unusable spans / log records are dropped and counted: 200 with partial_success
    write              the rest, one record on the signal's OTLP topic in KAFKA_OTLP_ENCODING; 200 only
                       once Kafka has acknowledged it (acks=all); Kafka unavailable: 503 + Retry-After

The receiver never touches the engine: the bridge and the workers read the OTLP topics like any other,
so a worker or engine outage delays the data but loses nothing the client was told was accepted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask, Response, request
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from panopticon import flow, telemetry
from panopticon.access import token_ok
from panopticon.exceptions import KafkaUnavailable
from panopticon.model.times import now_ms
from panopticon.otlp.body import BodyError, read_body
from panopticon.otlp.writer import KafkaWriter, RecordTooLarge
from panopticon.processing.otlp import Screening, screen_logs, screen_traces
from panopticon.processing.otlp_codec import JSON, PROTO, OtlpDecodeError, parse_logs, parse_traces, serialize
from panopticon.settings import Settings, load_or_exit

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MEDIA_TYPES = {PROTO: "application/x-protobuf", JSON: "application/json"}
_ENCODINGS = {media: encoding for encoding, media in MEDIA_TYPES.items()}
# google.rpc.Code of each HTTP status we answer (the specification does not use it; clients may log it).
_GRPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 413: 3, 415: 3, 500: 13, 503: 14}


@dataclass(frozen=True)
class Signal:
    name: str  # traces / logs: the URL path and the metrics label
    stream: str  # the flow table's stream whose topic takes it
    noun: str  # what partial_success counts
    parse: Callable[[bytes, str], Any]
    screen: Callable[[Any, int], Screening]
    response: Callable[[Screening, str], Message]


def _traces_response(screening: Screening, message: str) -> Message:
    response = ExportTraceServiceResponse()
    if message:
        response.partial_success.rejected_spans = screening.rejected
        response.partial_success.error_message = message
    return response


def _logs_response(screening: Screening, message: str) -> Message:
    response = ExportLogsServiceResponse()
    if message:
        response.partial_success.rejected_log_records = screening.rejected
        response.partial_success.error_message = message
    return response


TRACES = Signal("traces", "otlp_spans", "spans", parse_traces, screen_traces, _traces_response)
LOGS = Signal("logs", "otlp_logs", "log records", parse_logs, screen_logs, _logs_response)


def create_otlp_app(settings: Settings | None = None, writer: KafkaWriter | None = None) -> Flask:
    settings = settings or load_or_exit()
    topics = {signal.name: flow.stream(signal.stream).topic(settings) for signal in (TRACES, LOGS)}
    kafka = writer or KafkaWriter(settings, list(topics.values()))
    receiver = Receiver(settings, kafka, topics)
    app = Flask("panopticon.otlp", static_folder=None)
    app.config["PANOPTICON_SETTINGS"] = settings
    app.extensions["panopticon.otlp"] = receiver
    app.add_url_rule("/v1/traces", "traces", lambda: receiver.export(TRACES), methods=["POST"])
    app.add_url_rule("/v1/logs", "logs", lambda: receiver.export(LOGS), methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: Response(b'{"status":"ok"}', mimetype="application/json"))
    app.add_url_rule("/metrics", "metrics", receiver.metrics)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return status_response(exc.code or 500, exc.description or exc.name, _response_encoding())

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return status_response(500, "internal error (logged by the receiver)", _response_encoding())

    # Started (and the OTLP topics checked) with the process, not on the first request, when Kafka answers.
    try:
        kafka.ensure_topics()
    except KafkaUnavailable as exc:
        log.warning("OTLP topics not checked yet (retried on the first request): %s", exc)
    return app


class Receiver:
    def __init__(self, settings: Settings, writer: KafkaWriter, topics: dict[str, str]) -> None:
        self.settings = settings
        self.writer = writer
        self.topics = topics
        self.encoding = settings.kafka_otlp_encoding
        self.tokens = settings.api_auth_tokens

    def export(self, signal: Signal) -> Response:
        started = time.perf_counter()
        response = self._export(signal)
        telemetry.OTLP_REQUESTS.labels(signal.name, str(response.status_code)).inc()
        telemetry.OTLP_REQUEST_SECONDS.labels(signal.name).observe(time.perf_counter() - started)
        return response

    def _export(self, signal: Signal) -> Response:
        encoding = _ENCODINGS.get(request.mimetype)
        answer_in = encoding or JSON
        if self.tokens and not token_ok(request.headers.get("Authorization"), self.tokens):
            return status_response(401, "a valid bearer token is required (Authorization: Bearer <token>)", answer_in)
        if encoding is None:
            return status_response(415, f"Content-Type must be application/x-protobuf or application/json, got "
                                        f"{request.content_type or 'none'!r}", answer_in)
        try:
            body = read_body(request.stream, request.content_length, request.headers.get("Content-Encoding", ""),
                             self.settings.otlp_max_body_bytes)
            message = signal.parse(body, encoding)
        except BodyError as exc:
            return status_response(exc.status, str(exc), encoding)
        except OtlpDecodeError as exc:
            return status_response(400, str(exc), encoding)
        telemetry.OTLP_BYTES.labels(signal.name).inc(len(body))
        screening = signal.screen(message, now_ms())
        if screening.rejected:
            telemetry.OTLP_ITEMS.labels(signal.name, "rejected").inc(screening.rejected)
            log.info("%s: %s", signal.name, screening.message(signal.noun)[:1000])
        if screening.accepted:
            # Unchanged bytes when nothing was dropped and the encodings agree; else the screened request.
            same = not screening.rejected and encoding == self.encoding
            value = body if same else serialize(message, self.encoding)
            try:
                self.writer.write(self.topics[signal.name], value)
            except RecordTooLarge as exc:
                return status_response(413, str(exc), encoding)
            except KafkaUnavailable as exc:
                log.warning("%s request refused with 503: %s", signal.name, exc)
                response = status_response(503, f"Kafka cannot take the data now: {exc}", encoding)
                response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
                return response
            telemetry.OTLP_ITEMS.labels(signal.name, "accepted").inc(screening.accepted)
        return message_response(200, signal.response(screening, screening.message(signal.noun)), encoding)

    def metrics(self) -> Response:
        if self.tokens and not token_ok(request.headers.get("Authorization"), self.tokens):
            return status_response(401, "a valid bearer token is required (Authorization: Bearer <token>)", JSON)
        return Response(generate_latest(telemetry.REGISTRY), mimetype=CONTENT_TYPE_LATEST)


def _response_encoding() -> str:
    return _ENCODINGS.get(request.mimetype, JSON)


def message_response(status: int, message: Message, encoding: str) -> Response:
    body = message.SerializeToString() if encoding == PROTO else orjson.dumps(json_format.MessageToDict(message))
    return Response(body, status=status, mimetype=MEDIA_TYPES[encoding])


def status_response(status: int, text: str, encoding: str) -> Response:
    """A failure: HTTP `status` with a google.rpc.Status body, as the OTLP specification asks."""
    return message_response(status, Status(code=_GRPC_CODES.get(status, 2), message=text), encoding)
