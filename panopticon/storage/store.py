"""The storage door: every read and write of the search engine goes through `SearchStore`.

Callers speak in data streams and documents; the store speaks REST to whichever engine the
transport talks to. Bulk bodies are built here as NDJSON bytes from documents the caller has
already serialised, so the hot ingest path encodes each document exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import orjson

from panopticon.exceptions import EngineRejected, PartialAnswer, StorageError
from panopticon.settings import Settings
from panopticon.storage import templates
from panopticon.storage.engines import EngineInfo, Transport, open_transport

log = logging.getLogger(__name__)

Version = tuple[int, int]  # (_seq_no, _primary_term) of a document
_IDS_PER_LOOKUP = 5000  # below the engine's 10,000-hit result window
# Only what is read: each item's status and error (answers come in request order, so not even the id).
_BULK_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"

Documents = Sequence[tuple[str, bytes]]  # (doc_id, JSON bytes), as bulk requests take them
Answer = tuple[Documents, dict[str, Any]]  # documents sent in one request, and the engine's answer to it


class BulkItem(NamedTuple):
    """The engine's answer for one document of a bulk request (a tuple: one per document written)."""

    doc_id: str
    status: int
    error_type: str | None = None
    reason: str | None = None

    @property
    def written(self) -> bool:
        """Created (or, by `index`, overwritten) by this request."""
        return self.status in (200, 201)

    @property
    def stored(self) -> bool:
        """Written now, or (409 on create) already stored by an earlier attempt."""
        return self.written or self.status == 409

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500


class SearchStore:
    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport

    @property
    def engine(self) -> EngineInfo:
        return self.transport.info

    def name(self, stream: str) -> str:
        return self.settings.data_stream(stream)

    # --- set-up -------------------------------------------------------------------------------------
    def ensure_setup(self) -> None:
        """Create policies, templates and data streams; safe to run on every start."""
        self._ensure_retention()
        for name, body in templates.index_templates(self.settings, self.engine.name).items():
            self.transport.request("PUT", f"/_index_template/{name}", body=body)
        for stream, mappings in templates.DATA_STREAM_MAPPINGS.items():
            self._ensure_data_stream(self.name(stream))
            self._bring_up_to_date(self.name(stream), mappings)
        for index, mappings in templates.PLAIN_INDICES.items():
            self._ensure_index(self.name(index), mappings)

    def _bring_up_to_date(self, stream: str, mappings: dict[str, Any]) -> None:
        """A data stream made by an earlier version keeps its backing indices' mapping and settings. The fields
        added since (the error group of a log) are added to it, or a strict mapping would refuse every new
        document; only those: a field it has keeps the way it was indexed (the engine refuses to change that in
        place; the template's new way applies from the next backing index on). Its refresh interval is set to
        this deployment's. One read of the backing indices, and a write only for what differs: every process
        runs this at start."""
        indices = self.transport.request("GET", f"/{stream}").values()
        missing = {field: spec for field, spec in mappings["properties"].items()
                   if any(field not in (index.get("mappings") or {}).get("properties", {}) for index in indices)}
        if missing:
            self.transport.request("PUT", f"/{stream}/_mapping", body={"properties": missing})
        wanted = templates.raw_index_settings(self.settings)
        if any(((index.get("settings") or {}).get("index") or {}).get(key) != value
               for index in indices for key, value in wanted.items()):
            self.transport.request("PUT", f"/{stream}/_settings", body={"index": wanted})

    def _ensure_data_stream(self, name: str) -> None:
        try:
            self.transport.request("PUT", f"/_data_stream/{name}")
        except EngineRejected as exc:
            if _missing_api(exc):
                raise StorageError(f"{self.engine.name} {self.engine.version} has no data streams API (its "
                                   f"data-streams module is missing); panopticon needs data streams: {exc}") from exc
            if "already_exists" not in str(exc):
                raise

    def _ensure_index(self, name: str, mappings: dict[str, Any]) -> None:
        try:
            self.transport.request("PUT", f"/{name}", body={
                "settings": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}, "mappings": mappings})
        except EngineRejected as exc:
            if "already_exists" not in str(exc):
                raise

    def _ensure_retention(self) -> None:
        days = templates.retention_days(self.settings)
        names = templates.retention_policy_names(self.settings)
        if self.engine.name == "elasticsearch":
            for stream, policy in names.items():
                try:
                    self.transport.request("PUT", f"/_ilm/policy/{policy}", body=templates.ilm_policy(days[stream]))
                except EngineRejected as exc:
                    if _missing_api(exc):
                        raise StorageError(f"elasticsearch {self.engine.version} has no ILM API (its index "
                                           f"lifecycle module is missing); panopticon needs ILM for retention "
                                           f"on Elasticsearch: {exc}") from exc
                    raise
            return
        if not self.settings.use_ism:
            log.warning("retention is not applied: USE_ISM=false on OpenSearch; delete old backing indices of "
                        "%s and %s yourself (see OPERATIONS.md)", *(self.name(s) for s in names))
            return
        try:
            self.transport.request("GET", "/_plugins/_ism/policies")
        except EngineRejected:
            log.warning("retention is not applied: USE_ISM=true but the ISM plugin does not answer on this node")
            return
        for stream, policy in names.items():
            body = templates.ism_policy(days[stream], f".ds-{self.name(stream)}-*")
            try:
                self.transport.request("PUT", f"/_plugins/_ism/policies/{policy}", body=body)
            except EngineRejected as exc:
                if exc.status != 409:
                    raise

    # --- writes -------------------------------------------------------------------------------------
    def bulk(self, index: str, op: str, items: Documents) -> list[BulkItem]:
        """`_bulk` requests of at most BULK_MAX_REQUEST_MB each; `items` are (doc_id, JSON bytes).

        Answers in the order given. A request the engine refuses as too large (413) is split in two and
        sent again, down to one document, which is then answered as a rejected item (status 413) instead
        of failing the rest.
        """
        return [item for chunk, answer in self._answers(index, op, items) for item in _bulk_items(chunk, answer, op)]

    def _answers(self, index: str, op: str, items: Documents) -> Iterator[Answer]:
        """(documents, the engine's answer for them) per request, in the order of `items`."""
        limit = int(self.settings.bulk_max_request_mb * 1024 * 1024)
        for chunk in _chunks(op, items, limit):
            yield from self._bulk_request(index, op, chunk)

    def _bulk_request(self, index: str, op: str, items: Documents) -> Iterator[Answer]:
        if not items:
            return
        body = _bulk_body(op, items)
        try:
            answer = self.transport.request(
                "POST", f"/{index}/_bulk", params={"filter_path": _BULK_FILTER}, body=body,
                headers={"content-type": "application/x-ndjson"})
        except EngineRejected as exc:
            if exc.status != 413:
                raise
            if len(items) == 1:
                refusal = {"status": 413, "error": {"type": "request_too_large", "reason": str(exc)}}
                yield items, {"errors": True, "items": [{op: refusal}]}
                return
            middle = len(items) // 2
            yield from self._bulk_request(index, op, items[:middle])
            yield from self._bulk_request(index, op, items[middle:])
            return
        yield items, answer

    def get_many(self, index: str, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{id: source} of the documents of `index` that exist among `doc_ids` (one `_mget`)."""
        if not doc_ids:
            return {}
        answer = self.transport.request("POST", f"/{index}/_mget", body={"ids": list(doc_ids)})
        return {doc["_id"]: doc["_source"] for doc in answer.get("docs", []) if doc.get("found")}

    def existing_ids(self, stream: str, doc_ids: Sequence[str]) -> set[str]:
        """Which of these ids a data stream already holds, in any of its backing indices (a replay check)."""
        found: set[str] = set()
        for start in range(0, len(doc_ids), _IDS_PER_LOOKUP):
            chunk = list(doc_ids[start:start + _IDS_PER_LOOKUP])
            answer = self.search(self.name(stream), {"query": {"ids": {"values": chunk}}, "size": len(chunk),
                                                     "_source": False, "track_total_hits": False})
            found.update(hit["_id"] for hit in answer.get("hits", {}).get("hits", []))
        return found

    def create_many(self, stream: str, items: Documents) -> list[BulkItem]:
        """Append to a data stream; an id that exists answers 409 and is not written twice."""
        return self.bulk(self.name(stream), "create", items)

    def create_unstored(self, stream: str, items: Documents) -> list[tuple[int, BulkItem]]:
        """`create_many`, answering only for the documents this request did not create: (position in `items`,
        answer). A request the engine answers without errors makes no object per document, and the ingest
        path's requests nearly all are (the answers were 5 % of a pool process's CPU, py-spy)."""
        out: list[tuple[int, BulkItem]] = []
        start = 0
        for chunk, answer in self._answers(self.name(stream), "create", items):
            if answer.get("errors") is False:
                _results(chunk, answer)  # still one answer per document sent, or StorageError
            else:
                out.extend((start + i, item) for i, item in enumerate(_bulk_items(chunk, answer, "create"))
                           if not item.written)
            start += len(chunk)
        return out

    def index_many(self, index: str, items: Documents) -> list[BulkItem]:
        """Create or overwrite by id (rollups)."""
        return self.bulk(index, "index", items)

    def put(self, index: str, doc_id: str, document: dict[str, Any], *, refresh: bool = False) -> None:
        params = {"refresh": "true"} if refresh else None
        self.transport.request("PUT", f"/{index}/_doc/{doc_id}", params=params, body=document)

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        try:
            source: dict[str, Any] = self.transport.request("GET", f"/{index}/_doc/{doc_id}")["_source"]
            return source
        except EngineRejected as exc:
            if exc.status == 404:
                return None
            raise

    def get_versioned(self, index: str, doc_id: str) -> tuple[dict[str, Any] | None, Version | None]:
        """The document and the version to pass to `put_if` (None, None when there is none)."""
        try:
            found = self.transport.request("GET", f"/{index}/_doc/{doc_id}")
        except EngineRejected as exc:
            if exc.status == 404:
                return None, None
            raise
        return found["_source"], (int(found["_seq_no"]), int(found["_primary_term"]))

    def put_if(self, index: str, doc_id: str, document: dict[str, Any], version: Version | None, *,
               refresh: bool = False) -> bool:
        """Write only if the document is still at `version` (None: only if it does not exist yet).

        False when someone else wrote it meanwhile: optimistic concurrency, so two writers of one
        progress marker cannot undo each other's work.
        """
        params: dict[str, str] = {"refresh": "true"} if refresh else {}
        if version is None:
            params["op_type"] = "create"
        else:
            params["if_seq_no"], params["if_primary_term"] = str(version[0]), str(version[1])
        try:
            self.transport.request("PUT", f"/{index}/_doc/{doc_id}", params=params, body=document)
        except EngineRejected as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def update(self, index: str, doc_id: str, body: dict[str, Any], *, retry_on_conflict: int = 5) -> None:
        """A scripted update or upsert of one document (`_update`)."""
        self.transport.request("POST", f"/{index}/_update/{doc_id}",
                               params={"retry_on_conflict": str(retry_on_conflict)}, body=body)

    def list_indices(self, pattern: str) -> list[str]:
        """Names of the indices matching `pattern` (none is not an error)."""
        listing = self.transport.request("GET", f"/_cat/indices/{pattern}", params={"format": "json", "h": "index"})
        return sorted(row["index"] for row in listing or [])

    def delete_index(self, name: str) -> None:
        """Delete one index by its exact name (never a pattern)."""
        if "*" in name or "," in name:
            raise StorageError(f"refusing to delete a pattern: {name}")
        self.transport.request("DELETE", f"/{name}")

    # --- reads --------------------------------------------------------------------------------------
    def search(self, index: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """The engine's answer; PartialAnswer when it timed out or lost shards (see `_complete`)."""
        params = {"ignore_unavailable": "true", "allow_no_indices": "true"}
        answer: dict[str, Any] = self.transport.request("POST", f"/{index}/_search", params=params, body=body,
                                                        timeout=timeout)
        return _complete(answer, index)

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        body = {"query": query} if query else None
        params = {"ignore_unavailable": "true", "allow_no_indices": "true"}
        return int(_complete(self.transport.request("POST", f"/{index}/_count", params=params, body=body),
                             index)["count"])

    def refresh(self, index: str) -> None:
        self.transport.request("POST", f"/{index}/_refresh", params={"ignore_unavailable": "true"})

    def ping(self) -> bool:
        try:
            self.transport.request("GET", "/_cluster/health", timeout=2)
        except StorageError:
            return False
        return True

    # --- tests and operators ------------------------------------------------------------------------
    def delete_namespace(self) -> None:
        """Delete every data stream, index and template of this prefix (never without a prefix).

        Indices are deleted by name: Elasticsearch 8+ refuses wildcard deletes by default
        (`action.destructive_requires_name`). An engine without the data streams API cannot delete
        data streams, so that step is skipped there.
        """
        prefix = self.settings.index_prefix
        if not prefix:
            raise StorageError("refusing to delete a namespace without INDEX_PREFIX")
        try:
            self.transport.request("DELETE", f"/_data_stream/{prefix}*")
        except EngineRejected as exc:
            if exc.status != 404 and not _missing_api(exc):
                raise
        resolved = self.transport.request("GET", f"/_resolve/index/{prefix}*", params={"expand_wildcards": "all"})
        indices = [index["name"] for index in resolved.get("indices", [])]
        if indices:
            self.transport.request("DELETE", "/" + ",".join(indices), params={"expand_wildcards": "all"})
        try:
            self.transport.request("DELETE", f"/_index_template/{prefix}*")
        except EngineRejected as exc:
            if exc.status != 404:
                raise

    def close(self) -> None:
        self.transport.close()


def _complete(answer: dict[str, Any], index: str) -> dict[str, Any]:
    """`answer`, unless it is partial. A search that timed out or lost shards still answers 200 with the
    hits and counts of the shards that did answer: counts that look exact and are not. Every reader
    (rollups, the query routes, the gap fill) would rather retry than store or show a smaller number."""
    if answer.get("timed_out"):
        raise PartialAnswer(f"search of {index} timed out on the engine: the answer would be partial")
    shards = answer.get("_shards") or {}
    if shards.get("failed"):
        reasons = "; ".join(str((failure.get("reason") or {}).get("reason", failure))[:200]
                            for failure in (shards.get("failures") or [])[:3])
        raise PartialAnswer(f"search of {index} failed on {shards['failed']} of {shards.get('total')} shards"
                            + (f": {reasons}" if reasons else ""))
    return answer


def _missing_api(exc: EngineRejected) -> bool:
    """Elasticsearch answers 400 "no handler found for uri" for an API whose module is not installed."""
    return exc.status == 400 and "no handler found" in str(exc)


def _bulk_body(op: str, items: Documents) -> bytes:
    """The ndjson body; the index is named once, in the path, so each action line carries only the id."""
    opening, quote = _action_opening(op), orjson.dumps
    lines = []
    for doc_id, source in items:
        lines.append(opening + quote(doc_id) + b"}}")
        lines.append(source)
    return b"\n".join(lines) + b"\n"


def _action_opening(op: str) -> bytes:
    return b'{"' + op.encode() + b'":{"_id":'


def _chunks(op: str, items: Documents, limit: int) -> list[Documents]:
    """`items` cut into runs whose bulk bodies stay under `limit` bytes (a document over it goes alone)."""
    overhead = len(_action_opening(op)) + 6  # the id's quotes, "}}" and two newlines; ids are ASCII
    out: list[Documents] = []
    start, size = 0, 0
    for i, (doc_id, source) in enumerate(items):
        item_size = len(source) + len(doc_id) + overhead
        if i > start and size + item_size > limit:
            out.append(items[start:i])
            start, size = i, 0
        size += item_size
    if start < len(items):
        out.append(items[start:])
    return out


def _results(items: Documents, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's items, one per document sent."""
    results: list[dict[str, Any]] = answer.get("items") or []
    if len(results) != len(items):
        raise StorageError(f"bulk answered {len(results)} items for {len(items)} documents")
    return results


def _bulk_items(items: Documents, answer: dict[str, Any], op: str) -> list[BulkItem]:
    out = []
    for (doc_id, _), result in zip(items, _results(items, answer), strict=True):
        entry = result[op]
        error = entry.get("error") or {}
        out.append(BulkItem(doc_id, int(entry["status"]), error.get("type"), error.get("reason")))
    return out


def open_store(settings: Settings, *, setup: bool = False) -> SearchStore:
    """The store for the configured engine; `setup=True` also creates templates and streams."""
    store = SearchStore(settings, open_transport(settings))
    if setup:
        store.ensure_setup()
    return store


def iter_hits(answer: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return (hit["_source"] for hit in answer.get("hits", {}).get("hits", []))
