"""Error-group routes: every group of a range (`/query/errors`), and one group with its occurrences."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.query.requests import ErrorGroupRequest, ErrorGroupsRequest

blueprint = Blueprint("groups", __name__)

_GROUPS_ARGS = schemas.ErrorGroupsArgs()
_GROUP_ARGS = schemas.ErrorGroupArgs()
FINGERPRINT_PARAM = {"fingerprint": {"type": "string", "minLength": 1, "maxLength": 64,
                                     "description": "The group's fingerprint (16 hex characters)."}}


@blueprint.get("/query/errors")
@operation(summary="Error groups: ERROR/FATAL logs grouped by fingerprint, with exact counts.",
           args=schemas.ErrorGroupsArgs, response=schemas.ErrorGroupsSchema)
def error_groups() -> Response:
    """Per group: a representative message, count, services, endpoints, first_seen (ever), last_seen, a trend and
    sample trace ids; default range: the last hour. Counts are exact for any range (rollups for the past, raw logs
    for the newest part and for late logs). Pages follow `next_cursor`. Cached in Redis (X-Cache)."""
    answer = params.query_service().error_groups(params.load(_GROUPS_ARGS, ErrorGroupsRequest))
    response = jsonify(answer.body)
    response.headers["X-Cache"] = answer.cache
    return response


@blueprint.get("/query/errors/<fingerprint>")
@operation(summary="One error group and its most recent occurrences.", args=schemas.ErrorGroupArgs,
           response=schemas.ErrorGroupSchema, path_params=FINGERPRINT_PARAM)
def error_group(fingerprint: str) -> Response:
    """The group's figures over the range (default: the last hour) and its newest occurrences; 404 when the group
    has none in the range."""
    found = params.query_service().error_group(params.load(_GROUP_ARGS, ErrorGroupRequest, fingerprint=fingerprint))
    if found is None:
        abort(404, description=f"no error of group {fingerprint!r} in this range")
    return jsonify(found)
