"""One table: stream -> Kafka topic -> decoder -> data stream. Everything else looks streams up here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from panopticon.processing.schemas import Decoded, Rejected, decode_log, decode_span
from panopticon.settings import Settings
from panopticon.storage import LOGS, TRACES

Decoder = Callable[..., Decoded | Rejected]


@dataclass(frozen=True)
class Stream:
    name: str
    topic: str
    data_stream: str
    decode: Decoder


def streams(settings: Settings) -> dict[str, Stream]:
    """Streams by name (`logs`, `spans`)."""
    return {
        "logs": Stream("logs", settings.kafka_apm_log_topic, LOGS, decode_log),
        "spans": Stream("spans", settings.kafka_apm_span_topic, TRACES, decode_span),
    }


def stream_by_topic(settings: Settings) -> dict[str, Stream]:
    return {s.topic: s for s in streams(settings).values()}
