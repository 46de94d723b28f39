"""`GET /query/traces/<traceId>`: one trace, every span (as a tree) and every log of it."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.query.requests import TraceLookup

blueprint = Blueprint("traces", __name__)

_ARGS = schemas.TraceArgs()


@blueprint.get("/query/traces/<traceId>")
@operation(summary="One trace: spans as a tree, logs, and a summary.", args=schemas.TraceArgs,
           response=schemas.TraceSchema, errors=(400, 401, 404, 503),
           path_params={"traceId": {"type": "string", "minLength": 1, "maxLength": 128,
                                    "description": "Trace id."}})
def trace(traceId: str) -> Response:  # the seed names path parameters in camelCase
    """Every span and log of the trace (optionally of one service / environment); 404 when none exists."""
    trace_id = params.path_id(traceId, "traceId")
    found = params.query_service().trace(params.load(_ARGS, TraceLookup, trace_id=trace_id))
    if found is None:
        abort(404, description=f"no span or log of trace {trace_id!r}")
    return jsonify(found)
