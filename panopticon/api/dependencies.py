"""`GET /query/dependencies`: the service map of a range (nodes with their figures, edges with theirs)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.query.requests import DependencyRequest

blueprint = Blueprint("dependencies", __name__)

_ARGS = schemas.DependenciesArgs()


@blueprint.get("/query/dependencies")
@operation(summary="The service map: services, databases, queues and external APIs, and the calls between them.",
           args=schemas.DependenciesArgs, response=schemas.DependenciesSchema)
def dependencies() -> Response:
    """Edges caller -> callee with calls, errors, error rate and p50/p90/p95/p99 (ms), and nodes with their own
    figures, in the range (default: the last hour, rounded out to whole minutes); `service` centres the map on one
    service. Read from the service map's rollups, and from raw spans only where they may be behind (`sources`).
    Cached in Redis (X-Cache)."""
    answer = params.query_service().dependencies(params.load(_ARGS, DependencyRequest))
    response = jsonify(answer.body)
    response.headers["X-Cache"] = answer.cache
    return response
