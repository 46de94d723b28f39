"""Search routes with cursor pagination: spans, logs, and the root spans (traces) of one service."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.query.requests import LogSearch, ServiceTraces, SpanSearch

blueprint = Blueprint("search", __name__)

_SPAN_ARGS = schemas.SpanSearchArgs()
_LOG_ARGS = schemas.LogSearchArgs()
_SERVICE_TRACE_ARGS = schemas.ServiceTracesArgs()
SERVICE_PARAM = {"serviceName": {"type": "string", "minLength": 1, "maxLength": 256,
                                 "description": "Service name (exact)."}}


@blueprint.get("/query/spans")
@operation(summary="Search spans.", args=schemas.SpanSearchArgs, response=schemas.SpanPageSchema)
def spans() -> Response:
    """Spans by service, environment, name, kind, status, latency, trace / span / parent id; default range: the
    last 15 minutes. Pages follow `next_cursor`."""
    return jsonify(params.query_service().spans(params.load(_SPAN_ARGS, SpanSearch)))


@blueprint.get("/query/services/<serviceName>/traces")
@operation(summary="Traces (root spans) of one service.", args=schemas.ServiceTracesArgs,
           response=schemas.SpanPageSchema, path_params=SERVICE_PARAM)
def service_traces(serviceName: str) -> Response:  # the seed names path parameters in camelCase
    """Root spans of the service by status, latency and time range; default range: the last 15 minutes."""
    service = params.path_text(serviceName, "serviceName")
    return jsonify(params.query_service().service_traces(params.load(_SERVICE_TRACE_ARGS, ServiceTraces,
                                                                     service=service)))


@blueprint.get("/query/logs")
@operation(summary="Search logs.", args=schemas.LogSearchArgs, response=schemas.LogPageSchema)
def logs() -> Response:
    """Logs by service, environment, level, trace / span id and message text (full-text match); default range:
    the last 15 minutes. Pages follow `next_cursor`."""
    return jsonify(params.query_service().logs(params.load(_LOG_ARGS, LogSearch)))
