"""`bulk_index`: one batch of raw Kafka messages -> validated documents -> their data streams.

The task is thin; `index_batch` does the work and is what the tests call. A batch succeeds only
when every valid document is stored (created now, or 409 = stored by an earlier attempt), every
invalid one is in the dead-letter topic, and every ERROR/FATAL log is on the error topic. Anything
transient that outlasts the retries fails the task, and the bridge hands the batch off again;
deterministic ids make that replay harmless.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson
from celery import current_app, shared_task
from celery.signals import worker_init

from panopticon import flow
from panopticon.exceptions import EngineUnavailable
from panopticon.model import is_error_level
from panopticon.processing.decoders import decoder_for
from panopticon.processing.groups import mark_new_groups
from panopticon.processing.outbox import DeadLetter, Outbox
from panopticon.processing.schemas import MAX_REASON_CHARS, Decoded, Rejected
from panopticon.settings import Settings
from panopticon.storage import BulkItem, SearchStore, import_clients, open_store

log = logging.getLogger(__name__)

Record = flow.Record
# Where a document came from: its record, and its index there when the record holds several documents.
Origin = tuple[Record, int | None]


@dataclass
class BatchOutcome:
    created: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: int = 0
    errors_forwarded: int = 0
    items: int = 0  # documents the records held, valid or not (an OTLP record holds many)
    groups_opened: int = 0  # error logs that were the first of their group ever stored
    rejected_ids: set[tuple[str, str]] = field(default_factory=set)  # (data stream, doc id) the engine refused

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "duplicates": self.duplicates, "dead_lettered": self.dead_lettered,
                "retried": self.retried, "errors_forwarded": self.errors_forwarded, "items": self.items,
                "groups_opened": self.groups_opened}


def index_batch(
    store: SearchStore,
    outbox: Outbox,
    stream_name: str,
    topic: str,
    records: Iterable[Record],
    *,
    max_retries: int,
    max_message_bytes: int,
    encoding: str | None = None,
    replay: bool = False,
    now_ms: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchOutcome:
    """Decode, store, dead-letter and forward one batch; `encoding` is the stream's record encoding (OTLP).

    `replay`: some of the batch may have been stored before (a re-send, or messages read again after a
    crash or a rebalance). Then the ids are first looked up in every backing index of their data stream,
    and those found are not written again: a `create` checks ids only in the current write index, so a
    replay across a rollover would otherwise store a second copy.
    """
    with _cycle_collection_paused():
        return _index_batch(store, outbox, stream_name, topic, records, max_retries=max_retries,
                            max_message_bytes=max_message_bytes, encoding=encoding, replay=replay, now_ms=now_ms,
                            sleep=sleep)


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """A batch makes tens of thousands of dicts that all live until it ends and form no cycles; the cycle
    collector kept scanning them again as they aged (a sixth of the worker's CPU, see bench/). It runs
    again, as usual, once the batch is done and its objects are freed."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _index_batch(store: SearchStore, outbox: Outbox, stream_name: str, topic: str, records: Iterable[Record], *,
                 max_retries: int, max_message_bytes: int, encoding: str | None, replay: bool, now_ms: int | None,
                 sleep: Callable[[float], None]) -> BatchOutcome:
    stream = flow.stream(stream_name)
    decode = decoder_for(stream, encoding)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    outcome = BatchOutcome()
    # Valid documents by the data stream they go to: a record of one stream may hold documents of two
    # (an OTLP trace record's exception events become logs).
    valid: dict[str, dict[str, Decoded]] = {}
    sources: dict[tuple[str, str], Origin] = {}
    own = stream.data_stream
    for record in records:
        partition, offset, raw = record
        items = decode(raw, topic=topic, partition=partition, offset=offset, now_ms=now_ms,
                       max_bytes=max_message_bytes)
        outcome.items += len(items)
        several = len(items) > 1
        for index, item in enumerate(items):
            if isinstance(item, Rejected):
                _dead_letter(outbox, outcome, topic, record, item.reason, item.index, item.payload)
                continue
            target = item.data_stream or own
            group = valid.get(target)
            if group is None:
                group = valid[target] = {}
            if item.doc_id not in group:
                # A producer that sends one id twice in a batch: keep the first, as the engine would.
                group[item.doc_id] = item
                sources[(target, item.doc_id)] = (record, index if several else None)

    for data_stream, group in valid.items():
        if data_stream == flow.LOGS:
            # Before storing: the first log of a group ever seen is stored (and forwarded) with new_group=true.
            outcome.groups_opened += mark_new_groups(store, group, now_ms)
        # Found ones are not written again, but still forwarded below: the first delivery may have stored
        # them and died before it forwarded their errors.
        stored = store.existing_ids(data_stream, list(group)) if replay and group else set()
        outcome.duplicates += len(stored)
        pending = [(doc_id, _encoded(d.document)) for doc_id, d in group.items() if doc_id not in stored]
        for attempt in range(max_retries + 1):
            if not pending:
                break
            if attempt:
                outcome.retried += len(pending)
                sleep(_backoff(attempt))
            pending = _store_once(store, data_stream, pending, outcome, outbox, topic, sources)
        if pending:
            raise EngineUnavailable(f"{len(pending)} documents still refused after {max_retries} retries")

    for data_stream, group in valid.items():
        if data_stream not in flow.ERROR_FORWARDING_DATA_STREAMS:
            continue
        for doc_id, decoded in group.items():
            if is_error_level(decoded.document.get("level")) and (data_stream, doc_id) not in outcome.rejected_ids:
                outbox.error_log(doc_id, decoded.document)
                outcome.errors_forwarded += 1
    outbox.flush()
    return outcome


def _encoded(document: dict[str, Any]) -> bytes:
    """The document's JSON, in memory of its own size.

    orjson's result keeps the 4 KB buffer it was written in, whatever the document's size (a span's is about
    500 bytes), and a batch holds thousands of them until its bulk request is answered. With the copy, the
    largest pool process peaked at 98 MiB instead of 133 in the bench's before/after, and index_batch alone
    took 2,000 minor page faults per 40,000 messages instead of 30,000 (its CPU gain in the pipeline is
    within the noise).
    """
    return bytes(memoryview(orjson.dumps(document)))


def _store_once(store: SearchStore, data_stream: str, pending: list[tuple[str, bytes]], outcome: BatchOutcome,
                outbox: Outbox, topic: str, sources: dict[tuple[str, str], Origin]) -> list[tuple[str, bytes]]:
    """One bulk attempt; returns what must be tried again."""
    try:
        unstored = store.create_unstored(data_stream, pending)
    except EngineUnavailable as exc:
        log.warning("bulk request failed, will retry: %s", exc)
        return pending
    outcome.created += len(pending) - len(unstored)
    again = []
    for position, item in unstored:
        doc_id, body = pending[position]
        if item.status == 409:
            outcome.duplicates += 1
        elif item.transient:
            again.append((doc_id, body))
        else:
            outcome.rejected_ids.add((data_stream, doc_id))
            record, index = sources[(data_stream, doc_id)]
            # One document of a record that holds several: dead-letter that document, not the whole record.
            _dead_letter(outbox, outcome, topic, record, _engine_reason(item), index,
                         body if index is not None else None)
    return again


def _dead_letter(outbox: Outbox, outcome: BatchOutcome, topic: str, record: Record, reason: str,
                 index: int | None = None, payload: bytes | None = None) -> None:
    partition, offset, raw = record
    outbox.dead_letter(DeadLetter(topic, partition, offset, raw if payload is None else payload, reason, index))
    outcome.dead_lettered += 1


def _engine_reason(item: BulkItem) -> str:
    return f"rejected by the search engine ({item.status} {item.error_type}): {item.reason}"


def _backoff(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter, so retrying workers do not stampede together."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


# --- the Celery task ------------------------------------------------------------------------------
@cache
def _resources() -> tuple[Settings, SearchStore, Outbox]:
    """Per worker process: one store (connection pool) and one producer, built on first task."""
    settings: Settings = current_app.conf.panopticon_settings
    store = open_store(settings, setup=True)
    return settings, store, Outbox(settings)


@worker_init.connect
def _import_engine_client(sender: Any, **_kwargs: Any) -> None:
    """In the worker's main process, before its pool forks: see `storage.import_clients`. What `_resources`
    does besides needs the engine and Kafka, so it stays with the first task (a child must start without them)."""
    import_clients(sender.app.conf.panopticon_settings)


@shared_task(name=flow.BULK_INDEX, acks_late=True)
def bulk_index(stream: str, topic: str, records: Any, replay: bool = False) -> dict[str, int]:
    """`records`: a batch in the hand-off format (`flow.Records`)."""
    settings, store, outbox = _resources()
    flow_stream = flow.stream(stream)
    outcome = index_batch(
        store, outbox, stream, topic, flow.Records.from_wire(records),
        max_retries=settings.bulk_max_retries, max_message_bytes=flow_stream.max_bytes(settings),
        encoding=flow_stream.encoding(settings), replay=replay,
    )
    return outcome.as_dict()


@shared_task(name=flow.DEAD_LETTER, acks_late=True)
def dead_letter(topic: str, records: Any, reason: str) -> dict[str, int]:
    """Messages the bridge gave up on: each failed alone BULK_POISON_ATTEMPTS times (see ingest/poison.py)."""
    _settings, _store, outbox = _resources()
    outcome = BatchOutcome()
    for record in flow.Records.from_wire(records):
        _dead_letter(outbox, outcome, topic, record,
                     f"gave up after repeated failures of this message alone: {reason}"[:MAX_REASON_CHARS])
    outbox.flush()
    return outcome.as_dict()
