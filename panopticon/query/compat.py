"""What the Jaeger and Zipkin query APIs need: trace search by their rules, and their JSON shapes.

Both APIs answer from the same stored spans and logs as `/query/...`. One span's *tags* are written once here
(`span_tags`): its attributes (nested objects flattened with dots, the OTLP bookkeeping under `otel` left out)
plus what the model knows of it (`span.kind`, `error`, `otel.status_code`, `http.*`, `deployment.environment`).
Jaeger shows them typed, Zipkin as strings, and a search by tag matches exactly what is shown.

Search (`find_traces`): the engine finds the most recent traces with a span matching what it can filter on
(service, span name, duration, time range, `error`); the other conditions (tags, Zipkin's annotationQuery and
remoteServiceName) are checked on the whole traces, newest first, at most SCAN_TRACES candidates per search:
a trace matches when one of its spans meets every condition, as in Jaeger and Zipkin.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from panopticon.model.times import iso_to_ms
from panopticon.query import filters as f
from panopticon.query.deadline import Deadline
from panopticon.query.engine import hits, run_search
from panopticon.query.search import log_out, span_out
from panopticon.query.traces import order_tree, trace_documents
from panopticon.rollup.edges import peer_of
from panopticon.storage import TRACES, SearchStore

SCAN_TRACES = 1000  # candidate traces a search checks when a condition is not indexed
FETCH_BATCH = 50
MAX_NAMES = 10_000
# Zipkin autocompleteKeys: tags whose values the engine can list (stored, indexed fields).
AUTOCOMPLETE_FIELDS = {"deployment.environment": "environment", "http.method": "http.method",
                       "http.route": "http.route", "http.status_code": "http.status_code", "span.kind": "kind"}


@dataclass(frozen=True)
class TraceQuery:
    """A search by Jaeger's or Zipkin's rules, times resolved (epoch ms, [start, end))."""

    start_ms: int
    end_ms: int
    limit: int
    service: str | None = None
    operation: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()  # (key, value); value None: the tag (or annotation) exists
    remote_service: str | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None

    @property
    def indexed_only(self) -> bool:
        return not self.remote_service and all(key == "error" and value == "true" for key, value in self.tags)


@dataclass
class Trace:
    trace_id: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)


# --- tags -----------------------------------------------------------------------------------------------------
def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif value is not None:
        out[prefix] = value


def span_tags(span: dict[str, Any]) -> dict[str, Any]:
    """The tags of one span (API span shape, `search.span_out`), values as stored (str, int, float, bool)."""
    out: dict[str, Any] = {}
    attributes = dict(span.get("attributes") or {})
    otel = attributes.pop("otel", None)
    _flatten("", attributes, out)
    for key, value in list(out.items()):
        if isinstance(value, list):
            out[key] = orjson.dumps(value).decode()
    if isinstance(otel, dict):
        scope = otel.get("scope") or {}
        if scope.get("name"):
            out["otel.scope.name"] = scope["name"]
        if scope.get("version"):
            out["otel.scope.version"] = scope["version"]
        if otel.get("status_message"):
            out["otel.status_description"] = otel["status_message"]
    if span.get("kind"):
        out["span.kind"] = span["kind"].lower()
    if span.get("status") in ("OK", "ERROR"):
        out["otel.status_code"] = span["status"]
    http = span.get("http") or {}
    for name in ("method", "route", "status_code"):
        if http.get(name) is not None:
            out[f"http.{name}"] = http[name]
    if span.get("environment"):
        out["deployment.environment"] = span["environment"]
    if span.get("is_error"):
        out["error"] = True
    return out


def tag_text(value: Any) -> str:
    """A tag value as Zipkin (and a Jaeger `tags` search) spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def remote_service(span: dict[str, Any], trace: Trace) -> str | None:
    """Who a CLIENT / PRODUCER span called: the service of a child in another service, else the peer it names."""
    if span.get("kind") not in ("CLIENT", "PRODUCER"):
        return None
    for other in trace.spans:
        if other.get("parent_span_id") == span["span_id"] and other["service_name"] != span["service_name"]:
            return str(other["service_name"])
    peer = peer_of(span.get("kind"), span.get("attributes") or {})
    return peer[0] if peer else None


def _span_matches(span: dict[str, Any], trace: Trace, q: TraceQuery) -> bool:
    if q.service is not None and span["service_name"] != q.service:
        return False
    if q.operation is not None and span["name"] != q.operation:
        return False
    duration = float(span["duration_ms"])
    if q.min_duration_ms is not None and duration < q.min_duration_ms:
        return False
    if q.max_duration_ms is not None and duration > q.max_duration_ms:
        return False
    if q.remote_service is not None and remote_service(span, trace) != q.remote_service:
        return False
    if q.tags:
        tags = span_tags(span)
        events = {str(e.get("name")) for e in ((span.get("attributes") or {}).get("otel") or {}).get("events", [])
                  if isinstance(e, dict)}
        for key, value in q.tags:
            if value is None:
                if key not in tags and key not in events:
                    return False
            elif key not in tags or tag_text(tags[key]) != value:
                return False
    return True


def trace_matches(trace: Trace, q: TraceQuery) -> bool:
    """One span of the trace meets every condition (and started inside the range)."""
    return any(q.start_ms <= iso_to_ms(span["start_time"]) < q.end_ms and _span_matches(span, trace, q)
               for span in trace.spans)


# --- search ---------------------------------------------------------------------------------------------------
def _span_filter(q: TraceQuery) -> dict[str, Any]:
    # `error=true` is the one tag the engine can filter on (is_error); the tag is only ever on failed spans.
    error = True if ("error", "true") in q.tags else None
    return f.bool_filter([
        f.time_range("@timestamp", q.start_ms, q.end_ms),
        f.optional_term("service_name", q.service),
        f.optional_term("name", q.operation),
        f.optional_term("is_error", error),
        f.number_range("duration_ms", q.min_duration_ms, q.max_duration_ms),
    ])


def recent_trace_ids(store: SearchStore, q: TraceQuery, size: int, deadline: Deadline) -> list[str]:
    """The ids of the `size` traces whose matching spans are the most recent (as Jaeger's storage does it)."""
    answer = run_search(store, store.name(TRACES), {
        "size": 0, "track_total_hits": False, "query": _span_filter(q),
        "aggs": {"traces": {"terms": {"field": "trace_id", "size": size, "order": [{"last": "desc"}, {"_key": "asc"}]},
                            "aggs": {"last": {"max": {"field": "@timestamp"}}}}}}, deadline)
    buckets = ((answer.get("aggregations") or {}).get("traces") or {}).get("buckets", [])
    return [str(bucket["key"]) for bucket in buckets]


def get_traces(store: SearchStore, trace_ids: list[str], deadline: Deadline) -> list[Trace]:
    """Every span and log of these traces, in the order of `trace_ids` (those with no span left out)."""
    if not trace_ids:
        return []
    query = f.bool_filter([f.terms("trace_id", trace_ids)])
    span_answer, log_answer = trace_documents(store, query, deadline)
    found: dict[str, Trace] = {trace_id: Trace(trace_id) for trace_id in trace_ids}
    for hit in hits(span_answer):
        span = span_out(hit)
        found[span["trace_id"]].spans.append(span)
    for hit in hits(log_answer):
        log = log_out(hit)
        if log["trace_id"] in found:
            found[log["trace_id"]].logs.append(log)
    out = []
    for trace_id in trace_ids:
        trace = found[trace_id]
        if trace.spans:
            trace.spans = order_tree(trace.spans)
            out.append(trace)
    return out


def find_traces(store: SearchStore, q: TraceQuery, deadline: Deadline) -> list[Trace]:
    """Up to `q.limit` whole traces, newest first, with a span meeting every condition of `q`."""
    if q.indexed_only:
        return get_traces(store, recent_trace_ids(store, q, q.limit, deadline), deadline)
    candidates = recent_trace_ids(store, q, SCAN_TRACES, deadline)
    out: list[Trace] = []
    for start in range(0, len(candidates), FETCH_BATCH):
        for trace in get_traces(store, candidates[start:start + FETCH_BATCH], deadline):
            if trace_matches(trace, q):
                out.append(trace)
                if len(out) == q.limit:
                    return out
    return out


def _names(store: SearchStore, field_name: str, filters: list[dict[str, Any] | None], deadline: Deadline,
           with_kind: bool = False) -> list[Any]:
    sources: list[dict[str, Any]] = [{"name": {"terms": {"field": field_name}}}]
    if with_kind:
        sources.append({"kind": {"terms": {"field": "kind", "missing_bucket": True}}})
    composite: dict[str, Any] = {"size": MAX_NAMES, "sources": sources}
    answer = run_search(store, store.name(TRACES), {
        "size": 0, "track_total_hits": False, "query": f.bool_filter(filters),
        "aggs": {"names": {"composite": composite}}}, deadline)
    buckets = ((answer.get("aggregations") or {}).get("names") or {}).get("buckets", [])
    if with_kind:
        return [(b["key"]["name"], b["key"]["kind"]) for b in buckets]
    return [b["key"]["name"] for b in buckets]


def service_names(store: SearchStore, deadline: Deadline) -> list[str]:
    """Every service with stored spans (within the spans' retention)."""
    return sorted(str(name) for name in _names(store, "service_name", [], deadline))


def operations(store: SearchStore, service: str, kind: str | None, deadline: Deadline) -> list[tuple[str, str | None]]:
    """(span name, kind) of one service's spans; `kind` (SERVER, CLIENT, ...) keeps one kind only."""
    found = _names(store, "name", [f.term("service_name", service), f.optional_term("kind", kind)], deadline,
                   with_kind=True)
    return sorted({(str(name), k) for name, k in found}, key=lambda pair: (pair[0], pair[1] or ""))


def tag_values(store: SearchStore, key: str, deadline: Deadline) -> list[str]:
    """Values of one autocomplete key (AUTOCOMPLETE_FIELDS), as Zipkin spells them."""
    field_name = AUTOCOMPLETE_FIELDS.get(key)
    if field_name is None:
        return []
    values = _names(store, field_name, [], deadline)
    if key == "span.kind":
        values = [str(v).lower() for v in values]
    return sorted({tag_text(v) for v in values})


# --- Jaeger's JSON --------------------------------------------------------------------------------------------
def _us(iso: str) -> int:
    return iso_to_ms(iso) * 1000


def _duration_us(duration_ms: float) -> int:
    return max(1, round(duration_ms * 1000))


def jaeger_value(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "int64"
    elif isinstance(value, float):
        kind = "float64"
    else:
        kind, value = "string", str(value)
    return {"key": key, "type": kind, "value": value}


def _logs_by_span(trace: Trace) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for log in trace.logs:
        if log.get("span_id"):
            out[log["span_id"]].append(log)
    return out


def _events(span: dict[str, Any]) -> list[dict[str, Any]]:
    events = ((span.get("attributes") or {}).get("otel") or {}).get("events") or []
    return [e for e in events if isinstance(e, dict) and isinstance(e.get("time"), str)]


def _event_us(event: dict[str, Any], span: dict[str, Any]) -> int:
    try:
        return _us(event["time"])
    except ValueError:
        return _us(span["start_time"])


def jaeger_trace(trace: Trace) -> dict[str, Any]:
    """A trace as Jaeger's query API answers it (`model/json`): spans, processes, warnings."""
    processes: dict[tuple[str, str], str] = {}
    process_tags: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for span in trace.spans:
        ident = (span["service_name"], span.get("environment") or "")
        if ident not in processes:
            processes[ident] = f"p{len(processes) + 1}"
            resource = ((span.get("attributes") or {}).get("otel") or {}).get("resource") or {}
            tags = [jaeger_value(k, v) for k, v in sorted(resource.items())
                    if k != "service.name" and isinstance(v, str | int | float | bool)]
            if ident[1]:
                tags.append(jaeger_value("deployment.environment", ident[1]))
            process_tags[ident] = tags
    ids = {span["span_id"] for span in trace.spans}
    logs = _logs_by_span(trace)
    spans = []
    for span in trace.spans:
        references = []
        warnings = []
        parent = span.get("parent_span_id")
        if parent:
            references.append({"refType": "CHILD_OF", "traceID": trace.trace_id, "spanID": parent})
            if parent not in ids:
                warnings.append(f"parent span {parent} is not in this trace (not stored, or not yet)")
        for link in ((span.get("attributes") or {}).get("otel") or {}).get("links") or []:
            if isinstance(link, dict) and link.get("span_id"):
                references.append({"refType": "FOLLOWS_FROM", "traceID": link.get("trace_id") or trace.trace_id,
                                   "spanID": link["span_id"]})
        span_logs: list[dict[str, Any]] = [{"timestamp": _event_us(event, span),
                      "fields": [jaeger_value("event", event.get("name") or ""),
                                 *(jaeger_value(k, v) for k, v in sorted((event.get("attributes") or {}).items())
                                   if isinstance(v, str | int | float | bool))]}
                     for event in _events(span)]
        span_logs += [{"timestamp": _us(log["timestamp"]),
                       "fields": [jaeger_value("event", log["message"]), jaeger_value("level", log["level"])]}
                      for log in logs.get(span["span_id"], [])]
        span_logs.sort(key=lambda entry: entry["timestamp"])
        spans.append({
            "traceID": trace.trace_id, "spanID": span["span_id"], "flags": 1, "operationName": span["name"],
            "references": references, "startTime": _us(span["start_time"]),
            "duration": _duration_us(span["duration_ms"]),
            "tags": [jaeger_value(k, v) for k, v in sorted(span_tags(span).items())], "logs": span_logs,
            "processID": processes[(span["service_name"], span.get("environment") or "")],
            "warnings": warnings or None})
    return {"traceID": trace.trace_id, "spans": spans,
            "processes": {pid: {"serviceName": ident[0], "tags": process_tags[ident]}
                          for ident, pid in processes.items()},
            "warnings": None}


# --- Zipkin's JSON --------------------------------------------------------------------------------------------
ZIPKIN_KINDS = ("CLIENT", "SERVER", "PRODUCER", "CONSUMER")


def zipkin_spans(trace: Trace) -> list[dict[str, Any]]:
    """A trace as Zipkin's v2 API answers it: a list of spans (`zipkin2-api.yaml` Span)."""
    logs = _logs_by_span(trace)
    out = []
    for span in trace.spans:
        body: dict[str, Any] = {"traceId": trace.trace_id, "id": span["span_id"]}
        if span.get("parent_span_id"):
            body["parentId"] = span["parent_span_id"]
        body["name"] = span["name"]
        if span.get("kind") in ZIPKIN_KINDS:
            body["kind"] = span["kind"]
        body["timestamp"] = _us(span["start_time"])
        body["duration"] = _duration_us(span["duration_ms"])
        body["localEndpoint"] = {"serviceName": span["service_name"]}
        remote = remote_service(span, trace)
        if remote:
            body["remoteEndpoint"] = {"serviceName": remote}
        annotations = [{"timestamp": _event_us(event, span), "value": str(event.get("name") or "")}
                       for event in _events(span)]
        annotations += [{"timestamp": _us(log["timestamp"]), "value": f"{log['level']}: {log['message']}"}
                        for log in logs.get(span["span_id"], [])]
        if annotations:
            body["annotations"] = sorted(annotations, key=lambda a: (a["timestamp"], a["value"]))
        body["tags"] = {k: tag_text(v) for k, v in sorted(span_tags(span).items())}
        out.append(body)
    return out


def split_annotation_query(text: str) -> tuple[tuple[str, str | None], ...]:
    """Zipkin's `annotationQuery`: `http.method=GET and error` -> (("http.method", "GET"), ("error", None))."""
    out: list[tuple[str, str | None]] = []
    for part in text.split(" and "):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        out.append((key.strip(), value.strip() if sep else None))
    return tuple(out)


def remote_services(edges: Iterable[tuple[str, str]], service: str) -> list[str]:
    """Zipkin's remoteServices of a service: the callees of its edges."""
    return sorted({callee for caller, callee in edges if caller == service})
