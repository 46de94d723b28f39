"""Search routes with cursor pagination: spans, logs, and the root spans (traces) of one service."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.exceptions import InvalidParameter
from panopticon.query.search import (
    LEVELS,
    LogQuery,
    Page,
    SpanQuery,
    log_cursor,
    search_logs,
    search_spans,
    span_cursor,
)
from panopticon.query.timeparse import TimeRange, iso

blueprint = Blueprint("search", __name__)

_SPAN_ARGS = schemas.SpanSearchArgs()
_LOG_ARGS = schemas.LogSearchArgs()
_SERVICE_TRACE_ARGS = schemas.ServiceTracesArgs()
SERVICE_PARAM = {"serviceName": {"type": "string", "minLength": 1, "maxLength": 256,
                                 "description": "Service name (exact)."}}


def _page_response(page: Page, window: TimeRange) -> Response:
    return jsonify(items=page.items, total=page.total, next_cursor=page.next_cursor, **{
        "from": iso(window.start_ms), "to": iso(window.end_ms)})


def _durations(args: dict) -> tuple[float | None, float | None]:
    low, high = args.get("min_duration_ms"), args.get("max_duration_ms")
    if low is not None and high is not None and low > high:
        raise InvalidParameter("min_duration_ms", "must not be greater than max_duration_ms")
    return low, high


@blueprint.get("/query/spans")
@operation(summary="Search spans.", args=schemas.SpanSearchArgs, response=schemas.SpanPageSchema)
def spans() -> Response:
    """Spans by service, environment, name, kind, status, latency, trace / span / parent id; default range: the
    last 15 minutes. Pages follow `next_cursor`."""
    args = params.load_args(_SPAN_ARGS)
    window = params.window(args, "15m")
    limit, sort = params.page_limit(args), params.sort(args)
    low, high = _durations(args)
    query = SpanQuery(window, service=args.get("service"), environment=args.get("environment"),
                      name=args.get("name"), kind=args.get("kind"), status=args.get("status"),
                      error=args.get("error"), min_duration_ms=low, max_duration_ms=high,
                      trace_id=args.get("trace_id"), span_id=args.get("span_id"),
                      parent_span_id=args.get("parent_span_id"))
    after = span_cursor(args.get("cursor"), sort)
    page = search_spans(params.store(), query, sort, limit=limit, after=after, timeout=params.timeout())
    return _page_response(page, window)


@blueprint.get("/query/services/<serviceName>/traces")
@operation(summary="Traces (root spans) of one service.", args=schemas.ServiceTracesArgs,
           response=schemas.SpanPageSchema, path_params=SERVICE_PARAM)
def service_traces(serviceName: str) -> Response:  # the seed names path parameters in camelCase
    """Root spans of the service by status, latency and time range; default range: the last 15 minutes."""
    service = params.path_text(serviceName, "serviceName")
    args = params.load_args(_SERVICE_TRACE_ARGS)
    window = params.window(args, "15m")
    limit, sort = params.page_limit(args), params.sort(args)
    low, high = _durations(args)
    query = SpanQuery(window, service=service, environment=args.get("environment"), status=args.get("status"),
                      error=args.get("error"), min_duration_ms=low, max_duration_ms=high, roots_only=True)
    after = span_cursor(args.get("cursor"), sort)
    page = search_spans(params.store(), query, sort, limit=limit, after=after, timeout=params.timeout())
    return _page_response(page, window)


def _levels(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    levels = tuple(dict.fromkeys(part.strip().upper() for part in text.split(",") if part.strip()))
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        raise InvalidParameter("level", f"must be one or more of {', '.join(LEVELS)}, comma separated")
    return levels


@blueprint.get("/query/logs")
@operation(summary="Search logs.", args=schemas.LogSearchArgs, response=schemas.LogPageSchema)
def logs() -> Response:
    """Logs by service, environment, level, trace / span id and message text (full-text match); default range:
    the last 15 minutes. Pages follow `next_cursor`."""
    args = params.load_args(_LOG_ARGS)
    window = params.window(args, "15m")
    limit, sort = params.page_limit(args), params.sort(args)
    query = LogQuery(window, service=args.get("service"), environment=args.get("environment"),
                     levels=_levels(args.get("level")), trace_id=args.get("trace_id"), span_id=args.get("span_id"),
                     text=args.get("q"))
    after = log_cursor(args.get("cursor"), sort)
    page = search_logs(params.store(), query, sort, limit=limit, after=after, timeout=params.timeout())
    return _page_response(page, window)
