"""Which error log opened its group: the `new_group` flag of ERROR/FATAL logs, decided once per group.

`error-groups` holds one document per fingerprint ever stored, whose id is the fingerprint and which names
the log that opened the group (`first_event_id`). Before a batch's logs are stored, the registry is read
for the batch's fingerprints (one `_mget`); a fingerprint it does not hold is created with `create` (the
engine lets exactly one writer win, so two workers seeing a new error at once agree on who opened it).
A log is then stored with `new_group: true` exactly when it is the one its group names.

The decision is a stored fact, not a guess: a batch stored again (a replay, a retry after a crash) reads
the same registry and marks the same log, and the live stream, the gap fill and the API all see the flag
the log was stored with. Only the first log of a group in a batch, in batch order, can open it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from panopticon.exceptions import EngineUnavailable
from panopticon.flow import ERROR_GROUPS
from panopticon.model.times import iso_ms
from panopticon.processing.schemas import Decoded
from panopticon.storage import SearchStore

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 1000


def first_of_each_group(documents: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """{fingerprint: (doc id, document)} of the first error log of each group, in batch order (pure)."""
    firsts: dict[str, tuple[str, dict[str, Any]]] = {}
    for doc_id, document in documents:
        fingerprint = document.get("fingerprint")
        if fingerprint:
            firsts.setdefault(fingerprint, (doc_id, document))
    return firsts


def mark(documents: Iterable[tuple[str, dict[str, Any]]], owners: Mapping[str, str]) -> int:
    """Set `new_group` on every error log: true for the log its group's registry entry names (pure).
    Returns how many opened a group."""
    opened = 0
    for doc_id, document in documents:
        fingerprint = document.get("fingerprint")
        if fingerprint:
            document["new_group"] = owners.get(fingerprint) == doc_id
            opened += document["new_group"]
    return opened


def registration(fingerprint: str, doc_id: str, document: dict[str, Any], now_ms: int) -> dict[str, Any]:
    return {"fingerprint": fingerprint, "service_name": document.get("service_name"), "first_event_id": doc_id,
            "first_seen": document.get("@timestamp"), "registered_at": iso_ms(now_ms),
            "message": str(document.get("message", ""))[:MAX_MESSAGE_CHARS], "error_type": document.get("error_type")}


def mark_new_groups(store: SearchStore, decoded: Mapping[str, Decoded], now_ms: int) -> int:
    """Register the batch's new groups and set `new_group` on its error logs; returns how many opened one.

    Raises EngineUnavailable when the registry cannot be read or written now (the batch is retried).
    """
    documents = [(doc_id, item.document) for doc_id, item in decoded.items()]
    firsts = first_of_each_group(documents)
    if not firsts:
        return 0
    index = store.name(ERROR_GROUPS)
    owners = {fp: str(source.get("first_event_id")) for fp, source in store.get_many(index, list(firsts)).items()}
    missing = [fp for fp in firsts if fp not in owners]
    if missing:
        items = [(fp, orjson.dumps(registration(fp, *firsts[fp], now_ms))) for fp in missing]
        lost = []
        for item in store.bulk(index, "create", items):
            if item.status == 201:
                owners[item.doc_id] = firsts[item.doc_id][0]
            elif item.status == 409:  # another worker opened it just now
                lost.append(item.doc_id)
            elif item.transient:
                raise EngineUnavailable(f"error-group registry not written ({item.status}): {item.reason}")
            else:  # never hold ingest back for a flag: the group's logs are stored as not new
                log.error("error-group registry refused %s (%s %s): %s", item.doc_id, item.status, item.error_type,
                          item.reason)
        if lost:
            owners.update({fp: str(source.get("first_event_id")) for fp, source in store.get_many(index, lost).items()})
    return mark(documents, owners)
