"""marshmallow schemas of the HTTP API: the parameters each route accepts and the shape it answers with.

Parameter schemas validate every request (a failure becomes a 400 naming the parameter); response
schemas are not run on answers -- they exist to document them in `/openapi.json`, and the schemathesis
test checks that live answers match them, so the documentation cannot drift from the code.
Limits that depend on configuration (page size, range, bucket count) are checked by the routes, since
a schema class is built once at import.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from panopticon.model import ALERT_STATES, ID_PATTERN, ID_RULE, KINDS, LEVELS, STATUSES
from panopticon.query.errors import SORTS as ERROR_SORTS
from panopticon.query.metrics import SERVICE_SORTS
from panopticon.query.requests import Paging, Times
from panopticon.query.search import LOG_SORTS, SPAN_SORTS

_TIME = ("ISO 8601 (2024-05-01T12:00:00Z), epoch milliseconds, 'now', or a relative time before now "
         "such as 15m, 24h, 7d")


def _text(description: str, max_chars: int = 256, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(1, max_chars), metadata={"description": description}, **kwargs)


def _id(description: str) -> fields.String:
    return fields.String(validate=validate.Regexp(f"^{ID_PATTERN}$", error=ID_RULE),
                         metadata={"description": description})


class Upper(fields.String):
    """A choice accepted in any case and loaded upper case (SERVER, ERROR, ...)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).upper()


def _choice(choices: tuple[str, ...], description: str) -> Upper:
    return Upper(validate=validate.OneOf(choices, error=f"must be one of {', '.join(choices)}"),
                 metadata={"description": description})


class Levels(fields.String):
    """`ERROR` or `WARN,ERROR` (any case) -> ("WARN", "ERROR"), without repeats."""

    # Sent and documented as a string, loaded as a tuple: the override changes the loaded type on purpose.
    def _deserialize(  # type: ignore[override]
            self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...]:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not 1 <= len(text) <= 64:
            raise ValidationError("must be 1-64 characters")
        levels = tuple(dict.fromkeys(part.strip().upper() for part in text.split(",") if part.strip()))
        if not levels or any(level not in LEVELS for level in levels):
            raise ValidationError(f"must be one or more of {', '.join(LEVELS)}, comma separated")
        return levels


class Args(Schema):
    class Meta:
        unknown = RAISE


class TimeArgs(Args):
    start = fields.String(metadata={"description": f"Start of the range (inclusive): {_TIME}."})
    end = fields.String(metadata={"description": f"End of the range (exclusive), default now: {_TIME}."})

    @post_load
    def _times(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        data["times"] = Times(data.pop("start", None), data.pop("end", None))
        return data


class PageArgs(Args):
    """Paging of a search; the subclass declares `sort` with its own choices."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, error="must be at least 1"),
                           metadata={"description": "Items per page (at most QUERY_MAX_PAGE_SIZE)."})
    cursor = fields.String(validate=validate.Length(1, 4096),
                           metadata={"description": "`next_cursor` of the previous page, with the same sort."})
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))

    @post_load
    def _page(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        data["page"] = Paging(data.pop("limit"), data.pop("cursor", None), data.pop("sort"), data.pop("order"))
        return data


class DurationArgs(Args):
    min_duration_ms = fields.Float(validate=validate.Range(min=0), metadata={"description": "Shortest duration."})
    max_duration_ms = fields.Float(validate=validate.Range(min=0), metadata={"description": "Longest duration."})

    @validates_schema
    def _durations(self, data: dict[str, Any], **_kwargs: Any) -> None:
        low, high = data.get("min_duration_ms"), data.get("max_duration_ms")
        if low is not None and high is not None and low > high:
            raise ValidationError("must not be greater than max_duration_ms", "min_duration_ms")


class SpanSearchArgs(TimeArgs, PageArgs, DurationArgs):
    service = _text("Service name (exact).")
    environment = _text("Environment (exact).")
    name = _text("Span name (exact).", 1024)
    kind = _choice(KINDS, "Span kind, any case.")
    status = _choice(STATUSES, "Span status, any case.")
    error = fields.Boolean(metadata={"description": "Only errors (true) or only non-errors (false)."})
    trace_id = _id("Trace id.")
    span_id = _id("Span id.")
    parent_span_id = _id("Parent span id.")
    sort = fields.String(load_default="start_time", validate=validate.OneOf(tuple(SPAN_SORTS)))


class ServiceTracesArgs(TimeArgs, PageArgs, DurationArgs):
    environment = _text("Environment (exact).")
    status = _choice(STATUSES, "Status of the root span, any case.")
    error = fields.Boolean(metadata={"description": "Only failed (true) or only successful (false) traces."})
    sort = fields.String(load_default="start_time", validate=validate.OneOf(("start_time", "duration_ms")))


class LogSearchArgs(TimeArgs, PageArgs):
    service = _text("Service name (exact).")
    environment = _text("Environment (exact).")
    levels = Levels(data_key="level", metadata={
        "description": "Level, or several comma separated (TRACE, DEBUG, INFO, WARN, ERROR, FATAL; any case)."})
    trace_id = _id("Trace id.")
    span_id = _id("Span id.")
    text = _text("Full-text search in the message: every word must appear.", data_key="q")
    sort = fields.String(load_default="timestamp", validate=validate.OneOf(tuple(LOG_SORTS)))


class TraceArgs(Args):
    service = _text("Only spans and logs of this service.")
    environment = _text("Only spans and logs of this environment.")


class MetricsArgs(TimeArgs):
    interval = fields.String(validate=validate.Length(1, 16), metadata={
        "description": "Bucket size such as 1m, 15m, 1h, 1d (at least 1s); chosen from the range when absent."})
    environment = _text("Environment (exact).")
    endpoint = _text("Only this endpoint.", 1024)


class RankingArgs(TimeArgs):
    environment = _text("Environment (exact).")
    search = _text("Only names containing this text (case-insensitive, taken literally).")
    sort = fields.String(load_default="requests", validate=validate.OneOf(SERVICE_SORTS))
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, error="must be at least 1"),
                           metadata={"description": "Rows (at most QUERY_MAX_PAGE_SIZE)."})


class ServicesArgs(RankingArgs):
    by_environment = fields.Boolean(load_default=False, metadata={
        "description": "One row per service and environment (each row then has `environment`)."})


class EndpointTracesArgs(TimeArgs):
    environment = _text("Environment (exact).")
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, error="must be at least 1"),
                           metadata={"description": "Traces per list (at most QUERY_MAX_PAGE_SIZE)."})


class ErrorGroupsArgs(TimeArgs):
    service = _text("Service name (exact).")
    environment = _text("Environment (exact).")
    sort = fields.String(load_default="count", validate=validate.OneOf(ERROR_SORTS), metadata={
        "description": "count (in the range), last_seen (in the range) or first_seen (ever)."})
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, error="must be at least 1"),
                           metadata={"description": "Groups per page (at most QUERY_MAX_PAGE_SIZE)."})
    cursor = fields.String(validate=validate.Length(1, 4096),
                           metadata={"description": "`next_cursor` of the previous page (same sort and order)."})


class ErrorGroupArgs(TimeArgs):
    environment = _text("Environment (exact).")
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, error="must be at least 1"),
                           metadata={"description": "Recent occurrences listed (at most QUERY_MAX_PAGE_SIZE)."})


class AlertHistoryArgs(TimeArgs):
    rule = _text("Only this rule's changes.", 128)
    state = fields.String(validate=validate.OneOf(ALERT_STATES), metadata={
        "description": "Only changes to this state."})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, error="must be at least 1"),
                           metadata={"description": "Changes per page (at most QUERY_MAX_PAGE_SIZE)."})
    cursor = fields.String(validate=validate.Length(1, 4096),
                           metadata={"description": "`next_cursor` of the previous page."})


# --- responses ----------------------------------------------------------------------------------------


def _req(field: fields.Field[Any]) -> fields.Field[Any]:
    field.required = True
    return field


def _nullable(field_class: type[fields.Field[Any]], **kwargs: Any) -> fields.Field[Any]:
    return _req(field_class(allow_none=True, **kwargs))


class ErrorBodySchema(Schema):
    code = _req(fields.String(metadata={"description": "Machine-readable error code."}))
    message = _req(fields.String(metadata={"description": "What was wrong, for people."}))
    parameter = _nullable(fields.String, metadata={"description": "The request parameter at fault, if any."})


class ErrorSchema(Schema):
    error = _req(fields.Nested(ErrorBodySchema))


class HttpSchema(Schema):
    method = _nullable(fields.String)
    route = _nullable(fields.String)
    status_code = _nullable(fields.Integer)


class SpanSchema(Schema):
    id = _req(fields.String(metadata={"description": "Document id, `trace_id:span_id`."}))
    trace_id = _req(fields.String())
    span_id = _req(fields.String())
    parent_span_id = _nullable(fields.String)
    service_name = _req(fields.String())
    environment = _nullable(fields.String)
    name = _req(fields.String())
    kind = _nullable(fields.String)
    status = _nullable(fields.String)
    start_time = _req(fields.String())
    end_time = _req(fields.String())
    duration_ms = _req(fields.Float())
    http = _nullable(fields.Nested, nested=HttpSchema, metadata={"description": "When the span had HTTP data."})
    attributes = _req(fields.Dict())
    is_root = _req(fields.Boolean())
    is_request = _req(fields.Boolean(metadata={"description": "A SERVER span, or a root span without kind."}))
    is_error = _req(fields.Boolean(metadata={"description": "Status ERROR or HTTP status 5xx."}))
    endpoint = _nullable(fields.String, metadata={"description": "http.route, else the span name."})


class TreeSpanSchema(SpanSchema):
    depth = _req(fields.Integer(metadata={"description": "0 for a root (or a span whose parent is missing)."}))


class LogSchema(Schema):
    id = _req(fields.String())
    timestamp = _req(fields.String())
    service_name = _req(fields.String())
    environment = _nullable(fields.String)
    level = _req(fields.String())
    message = _req(fields.String())
    trace_id = _nullable(fields.String)
    span_id = _nullable(fields.String)
    event_id = _nullable(fields.String)
    attributes = _req(fields.Dict())


class _PageSchema(Schema):
    total = _req(fields.Integer(metadata={"description": "Matches in the whole range."}))
    next_cursor = _nullable(fields.String, metadata={"description": "Pass as `cursor` for the next page."})
    from_ = _req(fields.String(data_key="from"))
    to = _req(fields.String())


class SpanPageSchema(_PageSchema):
    items = _req(fields.List(fields.Nested(SpanSchema)))


class LogPageSchema(_PageSchema):
    items = _req(fields.List(fields.Nested(LogSchema)))


class TraceSummarySchema(Schema):
    start_time = _nullable(fields.String)
    end_time = _nullable(fields.String)
    duration_ms = _nullable(fields.Float)
    span_count = _req(fields.Integer())
    log_count = _req(fields.Integer())
    services = _req(fields.List(fields.String()))
    error_count = _req(fields.Integer())
    root_span_ids = _req(fields.List(fields.String()))
    missing_parents = _req(fields.List(fields.String(), metadata={
        "description": "Spans whose parent is not in the trace (shown as roots of their own subtree)."}))


class TraceSchema(Schema):
    trace_id = _req(fields.String())
    summary = _req(fields.Nested(TraceSummarySchema))
    spans = _req(fields.List(fields.Nested(TreeSpanSchema), metadata={
        "description": "Depth first: a parent before its children, siblings by start time."}))
    logs = _req(fields.List(fields.Nested(LogSchema)))
    truncated = _req(fields.Boolean(metadata={"description": "More than 10 000 spans or logs: the rest is left out."}))


class StatsSchema(Schema):
    requests = _req(fields.Integer())
    errors = _req(fields.Integer())
    error_rate = _nullable(fields.Float, metadata={"description": "errors / requests; null without requests."})
    p50 = _nullable(fields.Float, metadata={"description": "ms, within 0.5% of the exact nearest-rank value."})
    p90 = _nullable(fields.Float, metadata={"description": "ms, within 0.5% of the exact nearest-rank value."})
    p95 = _nullable(fields.Float, metadata={"description": "ms, within 0.5% of the exact nearest-rank value."})
    p99 = _nullable(fields.Float, metadata={"description": "ms, within 0.5% of the exact nearest-rank value."})
    avg_ms = _nullable(fields.Float)
    min_ms = _nullable(fields.Float)
    max_ms = _nullable(fields.Float)


class BucketSchema(StatsSchema):
    time = _req(fields.String(metadata={"description": "Start of the bucket."}))
    time_ms = _req(fields.Integer())


class RangeSchema(Schema):
    from_ = _req(fields.String(data_key="from"))
    to = _req(fields.String())


class RollupSourceSchema(RangeSchema):
    documents = _req(fields.Integer(metadata={"description": "Rollup documents read."}))
    tiers = _req(fields.List(fields.String(), metadata={"description": "Rollup tiers read (1m, 1h)."}))
    windows_read_raw = _req(fields.Integer(metadata={
        "description": "Windows of this part read from raw spans instead: spans were stored after their last roll."}))


class SourcesSchema(Schema):
    raw = _req(fields.List(fields.Nested(RangeSchema), metadata={
        "description": "Parts read from raw spans: the newest part, partial windows at the edges, and windows with "
                       "spans the rollups do not include yet."}))
    rollup = _nullable(fields.Nested, nested=RollupSourceSchema, metadata={
        "description": "Part read from rollups: whole windows older than ROLLUP_THRESHOLD_MINUTES whose every span "
                       "is in the rollups."})
    late_spans = _req(fields.Integer(metadata={
        "description": "Requests of the rollup part stored after the rollup mark, counted from raw spans."}))
    complete = _req(fields.Boolean(metadata={
        "description": "False while the range ends after `settled_until`: batches still in flight may add to it."}))
    settled_until = _req(fields.String(metadata={
        "description": "Now minus ROLLUP_SETTLE_SECONDS: every span stored before it is visible."}))


class MetricsSchema(Schema):
    service_name = _req(fields.String())
    environment = _nullable(fields.String)
    endpoint = _nullable(fields.String)
    from_ = _req(fields.String(data_key="from", metadata={"description": "Start, rounded down to the interval."}))
    to = _req(fields.String(metadata={"description": "End, rounded up to the interval."}))
    interval = _req(fields.String())
    interval_ms = _req(fields.Integer())
    buckets = _req(fields.List(fields.Nested(BucketSchema)))
    summary = _req(fields.Nested(StatsSchema))
    sources = _req(fields.Nested(SourcesSchema))


class ServiceRowSchema(StatsSchema):
    service_name = _req(fields.String())
    environment = fields.String(metadata={"description": "With by_environment=true only."})


class EndpointRowSchema(StatsSchema):
    endpoint = _req(fields.String())


class _RankingSchema(Schema):
    from_ = _req(fields.String(data_key="from"))
    to = _req(fields.String())
    total = _req(fields.Integer(metadata={"description": "Rows before `limit`."}))
    sources = _req(fields.Nested(SourcesSchema))


class ServicesSchema(_RankingSchema):
    items = _req(fields.List(fields.Nested(ServiceRowSchema)))


class EndpointsSchema(_RankingSchema):
    service_name = _req(fields.String())
    items = _req(fields.List(fields.Nested(EndpointRowSchema)))


class EndpointTracesSchema(Schema):
    service_name = _req(fields.String())
    endpoint = _req(fields.String())
    from_ = _req(fields.String(data_key="from"))
    to = _req(fields.String())
    errors = _req(fields.List(fields.Nested(SpanSchema), metadata={"description": "Most recent failed requests."}))
    slow = _req(fields.List(fields.Nested(SpanSchema), metadata={"description": "Slowest requests."}))


class HealthSchema(Schema):
    status = _req(fields.String())


class ReadySchema(Schema):
    status = _req(fields.String())
    checks = _req(fields.Dict(keys=fields.String(), values=fields.Boolean()))


# --- the service map ----------------------------------------------------------------------------------------


class DependenciesArgs(TimeArgs):
    environment = _text("Only calls made from this environment.")
    service = _text("Centre on this service: only its own calls, in and out, and the nodes they reach.")


class NodeSchema(StatsSchema):
    name = _req(fields.String())
    kind = _req(fields.String(metadata={
        "description": "service (we have its spans: figures are its requests), or database, queue, external (named "
                       "by callers' CLIENT / PRODUCER spans: figures are the calls made to it)."}))


class EdgeSchema(Schema):
    caller = _req(fields.String())
    callee = _req(fields.String())
    callee_kind = _req(fields.String(metadata={"description": "service, database, queue or external."}))
    calls = _req(fields.Integer())
    errors = _req(fields.Integer())
    error_rate = _nullable(fields.Float)
    p50 = _nullable(fields.Float, metadata={"description": "ms, within 0.5% of the exact nearest-rank value."})
    p90 = _nullable(fields.Float)
    p95 = _nullable(fields.Float)
    p99 = _nullable(fields.Float)
    avg_ms = _nullable(fields.Float)
    min_ms = _nullable(fields.Float)
    max_ms = _nullable(fields.Float)


class EdgeSourcesSchema(Schema):
    raw = _req(fields.List(fields.Nested(RangeSchema), metadata={
        "description": "Parts whose edges were computed from raw spans: partial windows at the edges, and windows "
                       "with a span of one of their traces stored after the service map's last roll."}))
    rollup = _nullable(fields.Nested, nested=RollupSourceSchema, metadata={"description": "Part read from edge "
                                                                                          "rollups."})
    complete = _req(fields.Boolean())
    settled_until = _req(fields.String())
    nodes = _req(fields.Nested(SourcesSchema, metadata={"description": "Where the nodes' figures came from."}))


class DependenciesSchema(Schema):
    from_ = _req(fields.String(data_key="from", metadata={"description": "Start, rounded down to the minute."}))
    to = _req(fields.String(metadata={"description": "End, rounded up to the minute."}))
    environment = _nullable(fields.String)
    service = _nullable(fields.String)
    nodes = _req(fields.List(fields.Nested(NodeSchema)))
    edges = _req(fields.List(fields.Nested(EdgeSchema), metadata={"description": "Most calls first."}))
    sources = _req(fields.Nested(EdgeSourcesSchema))


# --- the Jaeger query API -----------------------------------------------------------------------------------


class _Permissive(Schema):
    """Parameters of an API we imitate: its clients send ones we do not use (ignored), never refused."""

    class Meta:
        unknown = EXCLUDE


class JaegerTracesArgs(_Permissive):
    service = fields.String(validate=validate.Length(0, 256), metadata={"description": "Service (required)."})
    operation = fields.String(validate=validate.Length(0, 1024), metadata={"description": "Span name."})
    tags = fields.String(validate=validate.Length(0, 4096), metadata={
        "description": 'JSON object of tag values, e.g. {"http.status_code":"500","error":"true"}.'})
    tag = fields.String(validate=validate.Length(0, 1024), metadata={"description": "key:value (repeatable)."})
    start = fields.Integer(validate=validate.Range(min=0), metadata={"description": "Epoch microseconds."})
    end = fields.Integer(validate=validate.Range(min=0), metadata={"description": "Epoch microseconds."})
    lookback = fields.String(validate=validate.Length(0, 32), metadata={
        "description": "1h, 2d, ... when start is absent; 'custom' (start and end given)."})
    limit = fields.Integer(validate=validate.Range(min=0), metadata={"description": "Traces (default 100)."})
    minDuration = fields.String(validate=validate.Length(0, 32), metadata={"description": "Go duration: 100ms, 1.5s."})
    maxDuration = fields.String(validate=validate.Length(0, 32), metadata={"description": "Go duration."})
    traceID = fields.String(validate=validate.Length(0, 128), metadata={"description": "Trace ids (repeatable)."})


class JaegerOperationsArgs(_Permissive):
    service = fields.String(validate=validate.Length(0, 256), metadata={"description": "Service (required)."})
    spanKind = fields.String(validate=validate.Length(0, 32), metadata={
        "description": "server, client, producer, consumer or internal."})


class JaegerTraceArgs(_Permissive):
    start = fields.Integer(validate=validate.Range(min=0), metadata={
        "description": "Epoch microseconds (Jaeger) or milliseconds (Grafana's traceIdTimeParams); a hint only."})
    end = fields.Integer(validate=validate.Range(min=0), metadata={"description": "As start."})
    raw = fields.Boolean()


class JaegerDependenciesArgs(_Permissive):
    endTs = fields.Integer(validate=validate.Range(min=0), metadata={"description": "Epoch milliseconds (now)."})
    lookback = fields.Integer(validate=validate.Range(min=1), metadata={"description": "Milliseconds (1 day)."})
    service = fields.String(validate=validate.Length(0, 256), metadata={"description": "Only this service's links."})


class JaegerErrorSchema(Schema):
    code = fields.Integer()
    msg = _req(fields.String())


class JaegerKeyValueSchema(Schema):
    key = _req(fields.String())
    type = _req(fields.String(metadata={"description": "string, bool, int64 or float64."}))
    value = _req(fields.Raw())


class JaegerReferenceSchema(Schema):
    refType = _req(fields.String(metadata={"description": "CHILD_OF or FOLLOWS_FROM."}))
    traceID = _req(fields.String())
    spanID = _req(fields.String())


class JaegerLogSchema(Schema):
    timestamp = _req(fields.Integer(metadata={"description": "Epoch microseconds."}))
    fields_ = _req(fields.List(fields.Nested(JaegerKeyValueSchema), data_key="fields"))


class JaegerSpanSchema(Schema):
    traceID = _req(fields.String())
    spanID = _req(fields.String())
    flags = fields.Integer()
    operationName = _req(fields.String())
    references = _req(fields.List(fields.Nested(JaegerReferenceSchema)))
    startTime = _req(fields.Integer(metadata={"description": "Epoch microseconds."}))
    duration = _req(fields.Integer(metadata={"description": "Microseconds."}))
    tags = _req(fields.List(fields.Nested(JaegerKeyValueSchema)))
    logs = _req(fields.List(fields.Nested(JaegerLogSchema)))
    processID = _req(fields.String())
    warnings = _nullable(fields.List, cls_or_instance=fields.String())


class JaegerProcessSchema(Schema):
    serviceName = _req(fields.String())
    tags = _req(fields.List(fields.Nested(JaegerKeyValueSchema)))


class JaegerTraceSchema(Schema):
    traceID = _req(fields.String())
    spans = _req(fields.List(fields.Nested(JaegerSpanSchema)))
    processes = _req(fields.Dict(keys=fields.String(), values=fields.Nested(JaegerProcessSchema)))
    warnings = _nullable(fields.List, cls_or_instance=fields.String())


class _JaegerEnvelope(Schema):
    total = _req(fields.Integer())
    limit = _req(fields.Integer())
    offset = _req(fields.Integer())
    errors = _nullable(fields.List, cls_or_instance=fields.Nested(JaegerErrorSchema))


class JaegerErrorResponseSchema(_JaegerEnvelope):
    data = _nullable(fields.Raw)


class JaegerNamesSchema(_JaegerEnvelope):
    data = _req(fields.List(fields.String()))


class JaegerOperationSchema(Schema):
    name = _req(fields.String())
    spanKind = _req(fields.String())


class JaegerOperationsSchema(_JaegerEnvelope):
    data = _req(fields.List(fields.Nested(JaegerOperationSchema)))


class JaegerTracesSchema(_JaegerEnvelope):
    data = _req(fields.List(fields.Nested(JaegerTraceSchema)))


class JaegerLinkSchema(Schema):
    parent = _req(fields.String())
    child = _req(fields.String())
    callCount = _req(fields.Integer())


class JaegerDependenciesSchema(_JaegerEnvelope):
    data = _req(fields.List(fields.Nested(JaegerLinkSchema)))


# --- the Zipkin v2 API --------------------------------------------------------------------------------------


class ZipkinServiceArgs(_Permissive):
    serviceName = fields.String(validate=validate.Length(0, 256), metadata={"description": "Service (required)."})


class ZipkinTracesArgs(_Permissive):
    serviceName = fields.String(validate=validate.Length(0, 256))
    remoteServiceName = fields.String(validate=validate.Length(0, 256))
    spanName = fields.String(validate=validate.Length(0, 1024), metadata={"description": "'all' means any."})
    annotationQuery = fields.String(validate=validate.Length(0, 4096), metadata={
        "description": "`http.method=GET and error`: key=value matches a tag, a word a tag key or an annotation."})
    minDuration = fields.Integer(validate=validate.Range(min=0), metadata={"description": "Microseconds."})
    maxDuration = fields.Integer(validate=validate.Range(min=0), metadata={"description": "Microseconds."})
    endTs = fields.Integer(validate=validate.Range(min=0), metadata={"description": "Epoch milliseconds (now)."})
    lookback = fields.Integer(validate=validate.Range(min=1), metadata={"description": "Milliseconds (1 day)."})
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1), metadata={"description": "Traces."})


class ZipkinTraceManyArgs(_Permissive):
    traceIds = fields.String(validate=validate.Length(0, 65536),
                             metadata={"description": "Comma separated (required)."})


class ZipkinDependenciesArgs(_Permissive):
    endTs = fields.Integer(validate=validate.Range(min=0), metadata={"description": "Epoch milliseconds (required)."})
    lookback = fields.Integer(validate=validate.Range(min=1), metadata={"description": "Milliseconds (1 day)."})


class ZipkinAutocompleteArgs(_Permissive):
    key = fields.String(validate=validate.Length(0, 256), metadata={"description": "An autocompleteKeys key."})


class ZipkinEndpointSchema(Schema):
    serviceName = fields.String()


class ZipkinAnnotationSchema(Schema):
    timestamp = _req(fields.Integer(metadata={"description": "Epoch microseconds."}))
    value = _req(fields.String())


class ZipkinSpanSchema(Schema):
    traceId = _req(fields.String())
    id = _req(fields.String())
    parentId = fields.String()
    name = fields.String()
    kind = fields.String(metadata={"description": "CLIENT, SERVER, PRODUCER or CONSUMER; absent for local spans."})
    timestamp = fields.Integer(metadata={"description": "Epoch microseconds."})
    duration = fields.Integer(metadata={"description": "Microseconds."})
    localEndpoint = fields.Nested(ZipkinEndpointSchema)
    remoteEndpoint = fields.Nested(ZipkinEndpointSchema)
    annotations = fields.List(fields.Nested(ZipkinAnnotationSchema))
    tags = fields.Dict(keys=fields.String(), values=fields.String())


class ZipkinLinkSchema(Schema):
    parent = _req(fields.String())
    child = _req(fields.String())
    callCount = _req(fields.Integer())
    errorCount = _req(fields.Integer())
class NamedCountSchema(Schema):
    name = _req(fields.String())
    count = _req(fields.Integer())


class TrendBucketSchema(Schema):
    time = _req(fields.String(metadata={"description": "Start of the bucket."}))
    time_ms = _req(fields.Integer())
    count = _req(fields.Integer())


class ErrorSourcesSchema(Schema):
    raw = _req(fields.List(fields.Nested(RangeSchema), metadata={
        "description": "Parts read from raw logs: the newest part, partial windows at the edges, and windows with "
                       "error logs the rollups do not include yet."}))
    rollup = _nullable(fields.Nested, nested=RollupSourceSchema, metadata={
        "description": "Part read from the error rollups (errors-apm)."})
    late_logs = _req(fields.Integer(metadata={
        "description": "Error logs of the rollup part stored after the error rollups' mark, counted from raw logs."}))
    complete = _req(fields.Boolean(metadata={
        "description": "False while the range ends after `settled_until`: batches still in flight may add to it."}))
    settled_until = _req(fields.String())


class ErrorGroupRowSchema(Schema):
    fingerprint = _req(fields.String(metadata={"description": "The group: 16 hex characters (see the README)."}))
    message = _nullable(fields.String, metadata={"description": "The newest message of the group in the range."})
    error_type = _nullable(fields.String, metadata={"description": "Exception type, when the logs name one."})
    level = _nullable(fields.String)
    service_name = _nullable(fields.String)
    count = _req(fields.Integer(metadata={"description": "Occurrences in the range (exact)."}))
    first_seen = _nullable(fields.String, metadata={"description": "First occurrence ever (not only in the range)."})
    last_seen = _nullable(fields.String, metadata={"description": "Last occurrence in the range."})
    new = _req(fields.Boolean(metadata={"description": "The first occurrence ever is inside the range."}))
    services = _req(fields.List(fields.Nested(NamedCountSchema)))
    environments = _req(fields.List(fields.Nested(NamedCountSchema)))
    endpoints = _req(fields.List(fields.Nested(NamedCountSchema), metadata={
        "description": "Endpoints the errors happened on, when the logs say (up to 10)."}))
    trend = _req(fields.List(fields.Nested(TrendBucketSchema), metadata={"description": "Counts per bucket."}))
    sample_trace_ids = _req(fields.List(fields.String(), metadata={
        "description": "Trace ids of the newest occurrences."}))


class ErrorGroupsSchema(Schema):
    from_ = _req(fields.String(data_key="from"))
    to = _req(fields.String())
    interval = _req(fields.String(metadata={"description": "Bucket size of the trends."}))
    interval_ms = _req(fields.Integer())
    total = _req(fields.Integer(metadata={"description": "Groups in the range."}))
    items = _req(fields.List(fields.Nested(ErrorGroupRowSchema)))
    next_cursor = _nullable(fields.String, metadata={"description": "Pass as `cursor` for the next page."})
    sources = _req(fields.Nested(ErrorSourcesSchema))


class OccurrenceSchema(LogSchema):
    fingerprint = _nullable(fields.String)
    error_type = _nullable(fields.String)
    endpoint = _nullable(fields.String)
    new_group = _req(fields.Boolean(metadata={"description": "This log opened its group."}))


class ErrorGroupSchema(ErrorGroupRowSchema):
    from_ = _req(fields.String(data_key="from"))
    to = _req(fields.String())
    interval = _req(fields.String())
    interval_ms = _req(fields.Integer())
    occurrences = _req(fields.List(fields.Nested(OccurrenceSchema), metadata={"description": "Newest first."}))
    sources = _req(fields.Nested(ErrorSourcesSchema))


class AlertRuleSchema(Schema):
    name = _req(fields.String())
    type = _req(fields.String(metadata={"description": "latency, error_rate, request_rate, new_error_group or "
                                                       "error_group_count."}))
    service = _nullable(fields.String)
    environment = _nullable(fields.String)
    endpoint = _nullable(fields.String)
    percentile = _nullable(fields.String)
    threshold = _req(fields.Float())
    comparison = _req(fields.String(metadata={"description": "above, or below for a floor (request_rate)."}))
    min_requests = _nullable(fields.Integer)
    fingerprint = _nullable(fields.String)
    window = _req(fields.String())
    for_ = _req(fields.String(data_key="for"))
    severity = _req(fields.String())
    summary = _nullable(fields.String)
    labels = _req(fields.Dict(keys=fields.String(), values=fields.String()))
    receivers = _req(fields.List(fields.String()))


class AlertSchema(Schema):
    rule = _req(fields.Nested(AlertRuleSchema))
    state = _req(fields.String(metadata={"description": "inactive, pending, firing or resolved."}))
    since = _nullable(fields.String, metadata={"description": "When it entered this state."})
    active_since = _nullable(fields.String, metadata={"description": "Since when the condition holds."})
    evaluated_at = _nullable(fields.String)
    value = _nullable(fields.Float, metadata={"description": "The number last compared with the threshold."})
    detail = _req(fields.Dict())
    changes = _req(fields.Integer(metadata={"description": "State changes so far."}))


class ReceiverSchema(Schema):
    name = _req(fields.String())
    url = _req(fields.String())
    format = _req(fields.String(metadata={"description": "json or alertmanager."}))
    headers = _req(fields.List(fields.String(), metadata={"description": "Header names sent (values hidden)."}))


class AlertsSchema(Schema):
    source = _nullable(fields.String, metadata={"description": "ALERT_RULES_FILE."})
    version = _nullable(fields.String, metadata={"description": "A digest of the file's content."})
    total = _req(fields.Integer())
    states = _req(fields.Dict(keys=fields.String(), values=fields.Integer()))
    items = _req(fields.List(fields.Nested(AlertSchema)))
    receivers = _req(fields.List(fields.Nested(ReceiverSchema)))


class AlertChangeSchema(Schema):
    id = _req(fields.String())
    rule = _req(fields.String())
    type = _nullable(fields.String)
    state = _req(fields.String())
    previous = _nullable(fields.String)
    at = _req(fields.String())
    active_since = _nullable(fields.String)
    value = _nullable(fields.Float)
    threshold = _nullable(fields.Float)
    severity = _nullable(fields.String)
    service_name = _nullable(fields.String)
    environment = _nullable(fields.String)
    endpoint = _nullable(fields.String)
    detail = _req(fields.Dict())
    links = _req(fields.Dict())


class AlertHistorySchema(Schema):
    from_ = _req(fields.String(data_key="from"))
    to = _req(fields.String())
    total = _req(fields.Integer())
    items = _req(fields.List(fields.Nested(AlertChangeSchema)))
    next_cursor = _nullable(fields.String, metadata={"description": "Pass as `cursor` for the next page."})
