"""The flow table: which stream comes from which Kafka topic, which task stores it, and where it lands.

Pure data at the bottom of the import graph. The bridge reads it to map a topic to a stream without
loading a single validator; the worker resolves a stream's decoder by its import path only when a batch
arrives; storage takes the data-stream names from here. Task and queue names are written here once, so
the sender and the receiver of a task cannot spell it differently.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import zstandard

from panopticon.settings import Settings

# --- data streams and indices (names before INDEX_PREFIX) ---------------------------------------------
LOGS = "logs-apm"
TRACES = "traces-apm"
METRICS = "metrics-apm"  # monthly plain indices, metrics-apm-YYYY.MM: rollups are overwritten
EDGES = "edges-apm"  # the service map's rollups, monthly plain indices as METRICS (panopticon/rollup/edges.py)
STATE = "panopticon-state"  # progress markers (the rollup watermark)
ERRORS = "errors-apm"  # monthly plain indices, errors-apm-YYYY.MM: error-group counts per window (rollups)
ERROR_GROUPS = "error-groups"  # one document per error group ever seen: who opened it (the `new_group` flag)
ALERTS = "alerts-apm"  # alert states, their changes (history) and the notifications of each change

# --- Celery task names --------------------------------------------------------------------------------
BULK_INDEX = "bulk_index"
DEAD_LETTER = "dead_letter"  # messages the bridge gave up on (they failed alone); on the ingest queue
ROLLUP_DUE = "rollup_due"
ROLLUP_WINDOW = "rollup_window"
ROLLUP_RETENTION = "rollup_retention"
ROLLUP_TASKS = (ROLLUP_DUE, ROLLUP_WINDOW, ROLLUP_RETENTION)  # routed to CELERY_ROLLUP_QUEUE
ALERTS_DUE = "alerts_due"  # beat, every ALERT_INTERVAL_SECONDS: evaluate every rule
ALERT_DELIVER = "alert_deliver"  # one notification of one change to one target, retried on its own
ALERT_TASKS = (ALERTS_DUE, ALERT_DELIVER)  # routed to CELERY_ALERTS_QUEUE
# The modules that define them; a worker that cannot import one of them must not start.
TASK_MODULES = ("panopticon.processing.tasks", "panopticon.rollup.tasks", "panopticon.alerting.tasks")


@dataclass(frozen=True)
class Stream:
    """One kind of message, from its topic to its data stream."""

    name: str
    topic_setting: str  # the Settings field holding its Kafka topic
    task: str  # the Celery task that stores a batch of it
    decoder: str  # "module:function" turning one Kafka record into documents and rejections
    data_stream: str  # where its documents go, unless a decoder names another for one of them
    forwards_errors: bool  # ERROR/FATAL documents are copied to the error topic
    # The Settings field limiting one record's size (OTLP records carry a whole export request).
    max_bytes_setting: str = "max_message_bytes"
    # The Settings field naming the records' encoding, passed to the decoder as `encoding` (None: JSON only).
    encoding_setting: str | None = None
    # The Settings field (megabytes) that closes its batches by size: an OTLP record holds hundreds of spans,
    # so its batches must close on bytes long before BULK_BATCH_SIZE records.
    batch_bytes_setting: str = "bulk_batch_bytes_mb"

    def topic(self, settings: Settings) -> str:
        topic: str = getattr(settings, self.topic_setting)
        return topic

    def max_bytes(self, settings: Settings) -> int:
        limit: int = getattr(settings, self.max_bytes_setting)
        return limit

    def batch_bytes(self, settings: Settings) -> int:
        megabytes: float = getattr(settings, self.batch_bytes_setting)
        return max(1, int(megabytes * 1024 * 1024))

    def encoding(self, settings: Settings) -> str | None:
        if self.encoding_setting is None:
            return None
        encoding: str = getattr(settings, self.encoding_setting)
        return encoding


STREAMS: tuple[Stream, ...] = (
    Stream("logs", "kafka_apm_log_topic", BULK_INDEX, "panopticon.processing.schemas:decode_log_record", LOGS,
           forwards_errors=True),
    Stream("spans", "kafka_apm_span_topic", BULK_INDEX, "panopticon.processing.schemas:decode_span_record",
           TRACES, forwards_errors=False),
    # OTLP, as the Collector's kafkaexporter (or our `otlp` receiver) writes it: one export request a record.
    # A trace record also yields ERROR logs (span events named `exception`), stored in LOGS.
    Stream("otlp_spans", "kafka_otlp_span_topic", BULK_INDEX, "panopticon.processing.otlp:decode_traces_record",
           TRACES, forwards_errors=False, max_bytes_setting="otlp_max_body_bytes",
           encoding_setting="kafka_otlp_encoding", batch_bytes_setting="otlp_batch_bytes_mb"),
    Stream("otlp_logs", "kafka_otlp_log_topic", BULK_INDEX, "panopticon.processing.otlp:decode_logs_record",
           LOGS, forwards_errors=True, max_bytes_setting="otlp_max_body_bytes",
           encoding_setting="kafka_otlp_encoding", batch_bytes_setting="otlp_batch_bytes_mb"),
)
_BY_NAME = {stream.name: stream for stream in STREAMS}
# Data streams whose ERROR/FATAL documents are copied to the error topic, whichever stream they came from.
ERROR_FORWARDING_DATA_STREAMS = frozenset(s.data_stream for s in STREAMS if s.forwards_errors)


def stream(name: str) -> Stream:
    """The stream called `name`; KeyError for a name not in the table."""
    return _BY_NAME[name]


def streams_by_topic(settings: Settings) -> dict[str, Stream]:
    """Topic -> stream, with this deployment's topic names."""
    return {s.topic(settings): s for s in STREAMS}


# --- the hand-off: a batch's records, bridge -> worker ----------------------------------------------
RECORDS_FORMAT = "records/1"
RECORDS_CODEC = "zstd"
_COMPRESSOR = zstandard.ZstdCompressor(level=1)
Record = tuple[int, int, bytes]  # partition, offset, raw value


def _column(typecode: str, data: bytes) -> array:  # type: ignore[type-arg]
    column = array(typecode)
    column.frombytes(data)
    if sys.byteorder == "big":  # the wire is little-endian, whoever sends it
        column.byteswap()
    return column


def _wire(column: array) -> bytes:  # type: ignore[type-arg]
    if sys.byteorder == "big":
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


@dataclass(frozen=True, slots=True)
class Records:
    """The Kafka records of one batch (one topic), as the bridge hands them to a worker: partitions, offsets
    and value end positions as three little-endian integer columns, and every value joined into one string,
    compressed.

    Why: a list of [partition, offset, value] per message cost a Python object per message on each side
    (built, packed, unpacked, copied); the columns cost one copy each, whatever the batch holds. And every
    byte handed off is copied by Celery several times (base64, a JSON envelope, a copy kept in Redis until
    the task is acknowledged, a pipe to the pool process); zstd at level 1 makes JSON messages several
    times smaller for about a microsecond a message (see bench/).
    """

    partitions: array  # type: ignore[type-arg]  # 'i'
    offsets: array  # type: ignore[type-arg]  # 'q'
    ends: array  # type: ignore[type-arg]  # 'q': value i is data[ends[i - 1]:ends[i]]
    data: bytes

    @classmethod
    def of(cls, partitions: Sequence[int], offsets: Sequence[int], values: Sequence[bytes]) -> Records:
        return cls(array("i", partitions), array("q", offsets), array("q", accumulate(map(len, values))),
                   b"".join(values))

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[Record]:
        data, start = self.data, 0
        for partition, offset, end in zip(self.partitions, self.offsets, self.ends, strict=True):
            yield partition, offset, data[start:end]
            start = end

    def to_wire(self) -> list[Any]:
        """What the task's `records` argument carries (msgpack keeps the byte strings as they are)."""
        return [RECORDS_FORMAT, RECORDS_CODEC, _wire(self.partitions), _wire(self.offsets), _wire(self.ends),
                _COMPRESSOR.compress(self.data)]

    @classmethod
    def from_wire(cls, wire: Any) -> Records:
        """The records of a task's `records` argument: this format, or the list of [partition, offset, value]
        a bridge of an earlier release sends (so workers and bridges can be upgraded one at a time)."""
        if isinstance(wire, list | tuple) and wire and wire[0] == RECORDS_FORMAT:
            return cls._from_columns(wire)
        if isinstance(wire, list | tuple) and all(isinstance(r, list | tuple) and len(r) == 3 for r in wire):
            return cls.of([int(r[0]) for r in wire], [int(r[1]) for r in wire], [bytes(r[2]) for r in wire])
        raise ValueError("records: neither the records/1 format nor a list of [partition, offset, value]")

    @classmethod
    def _from_columns(cls, wire: list[Any] | tuple[Any, ...]) -> Records:
        if len(wire) != 6:
            raise ValueError(f"{RECORDS_FORMAT}: 6 members expected, got {len(wire)}")
        codec, data = wire[1], wire[5]
        if codec not in ("zstd", "none"):
            raise ValueError(f"{RECORDS_FORMAT}: unknown codec {codec!r}")
        if not isinstance(data, bytes | bytearray):
            raise ValueError(f"{RECORDS_FORMAT}: the values are {type(data).__name__}, not bytes")
        try:
            partitions, offsets, ends = _column("i", wire[2]), _column("q", wire[3]), _column("q", wire[4])
            size = ends[-1] if ends else 0
            if codec == "zstd":
                data = zstandard.ZstdDecompressor().decompress(data, max_output_size=size) if size else b""
        except (TypeError, ValueError, zstandard.ZstdError) as exc:  # not byte strings, or not what they claim
            raise ValueError(f"{RECORDS_FORMAT}: {exc}") from exc
        if not len(partitions) == len(offsets) == len(ends) or len(data) != size:
            raise ValueError(f"{RECORDS_FORMAT}: columns of different lengths, or values not adding up")
        return cls(partitions, offsets, ends, bytes(data))
