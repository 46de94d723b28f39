"""The flow table: which stream comes from which Kafka topic, which task stores it, and where it lands.

Pure data at the bottom of the import graph. The bridge reads it to map a topic to a stream without
loading a single validator; the worker resolves a stream's decoder by its import path only when a batch
arrives; storage takes the data-stream names from here. Task and queue names are written here once, so
the sender and the receiver of a task cannot spell it differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from panopticon.settings import Settings

# --- data streams and indices (names before INDEX_PREFIX) ---------------------------------------------
LOGS = "logs-apm"
TRACES = "traces-apm"
METRICS = "metrics-apm"  # monthly plain indices, metrics-apm-YYYY.MM: rollups are overwritten
STATE = "panopticon-state"  # progress markers (the rollup watermark)

# --- Celery task names --------------------------------------------------------------------------------
BULK_INDEX = "bulk_index"
DEAD_LETTER = "dead_letter"  # messages the bridge gave up on (they failed alone); on the ingest queue
ROLLUP_DUE = "rollup_due"
ROLLUP_WINDOW = "rollup_window"
ROLLUP_RETENTION = "rollup_retention"
ROLLUP_TASKS = (ROLLUP_DUE, ROLLUP_WINDOW, ROLLUP_RETENTION)  # routed to CELERY_ROLLUP_QUEUE
# The modules that define them; a worker that cannot import one of them must not start.
TASK_MODULES = ("panopticon.processing.tasks", "panopticon.rollup.tasks")


@dataclass(frozen=True)
class Stream:
    """One kind of message, from its topic to its data stream."""

    name: str
    topic_setting: str  # the Settings field holding its Kafka topic
    task: str  # the Celery task that stores a batch of it
    decoder: str  # "module:function" turning one Kafka record into documents and rejections
    data_stream: str
    forwards_errors: bool  # ERROR/FATAL documents are copied to the error topic

    def topic(self, settings: Settings) -> str:
        topic: str = getattr(settings, self.topic_setting)
        return topic


STREAMS: tuple[Stream, ...] = (
    Stream("logs", "kafka_apm_log_topic", BULK_INDEX, "panopticon.processing.schemas:decode_log_record", LOGS,
           forwards_errors=True),
    Stream("spans", "kafka_apm_span_topic", BULK_INDEX, "panopticon.processing.schemas:decode_span_record",
           TRACES, forwards_errors=False),
)
_BY_NAME = {stream.name: stream for stream in STREAMS}


def stream(name: str) -> Stream:
    """The stream called `name`; KeyError for a name not in the table."""
    return _BY_NAME[name]


def streams_by_topic(settings: Settings) -> dict[str, Stream]:
    """Topic -> stream, with this deployment's topic names."""
    return {s.topic(settings): s for s in STREAMS}
