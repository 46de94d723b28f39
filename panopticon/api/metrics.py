"""Statistics routes: a service's time series, the services overview, endpoint ranking, endpoint traces.

Aggregated answers are cached in Redis under their rounded question (see `panopticon.query.cache`);
the `X-Cache` header says `hit`, `miss`, or `off` (no REDIS_HOST).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from werkzeug.routing import PathConverter

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.api.search import SERVICE_PARAM
from panopticon.query.requests import EndpointTracesRequest, RankingRequest, SeriesRequest
from panopticon.query.service import Answer

blueprint = Blueprint("metrics", __name__)

_METRICS_ARGS = schemas.MetricsArgs()
_RANKING_ARGS = schemas.RankingArgs()
_SERVICES_ARGS = schemas.ServicesArgs()
_ENDPOINT_TRACES_ARGS = schemas.EndpointTracesArgs()
ENDPOINT_PARAM = {"endpointName": {"type": "string", "minLength": 1, "maxLength": 1024,
                                   "description": "Endpoint: http.route, else the span name (URL-encoded)."}}


class EndpointConverter(PathConverter):
    """Endpoint names are routes such as `/api/users/:id`: slashes included, a leading one too."""

    regex = r"[\s\S]+?"  # any character, newlines too
    part_isolating = False  # werkzeug would infer True from a regex without '/'


def _answer(answer: Answer) -> Response:
    response = jsonify(answer.body)
    response.headers["X-Cache"] = answer.cache
    return response


@blueprint.get("/query/services/<serviceName>/metrics")
@operation(summary="Time series of requests, p50/p90/p95/p99 latency and error rate.", args=schemas.MetricsArgs,
           response=schemas.MetricsSchema, path_params=SERVICE_PARAM)
def service_metrics(serviceName: str) -> Response:  # the seed names path parameters in camelCase
    """Requests, errors, error rate and p50/p90/p95/p99 per bucket; default range: the last hour. The range is widened
    to whole intervals (see `from` / `to`). Cached in Redis (X-Cache)."""
    service = params.path_text(serviceName, "serviceName")
    return _answer(params.query_service().series(params.load(_METRICS_ARGS, SeriesRequest, service=service)))


@blueprint.get("/query/services")
@operation(summary="Every service with its requests, p95 and error rate.", args=schemas.ServicesArgs,
           response=schemas.ServicesSchema)
def services_overview() -> Response:
    """Per service: requests, errors, error rate, p50/p90/p95/p99 in the range (default: the last hour); sort, search
    (substring of the name), limit; `by_environment=true` for one row per service and environment. Cached in
    Redis (X-Cache)."""
    return _answer(params.query_service().ranking(params.load(_SERVICES_ARGS, RankingRequest)))


@blueprint.get("/query/services/<serviceName>/endpoints")
@operation(summary="Endpoint ranking of one service.", args=schemas.RankingArgs, response=schemas.EndpointsSchema,
           path_params=SERVICE_PARAM)
def service_endpoints(serviceName: str) -> Response:  # the seed names path parameters in camelCase
    """Per endpoint of the service: requests, errors, error rate, p50/p90/p95/p99 (default range: the last hour); sort,
    search (substring of the endpoint), limit. Cached in Redis (X-Cache)."""
    service = params.path_text(serviceName, "serviceName")
    return _answer(params.query_service().ranking(params.load(_RANKING_ARGS, RankingRequest, service=service)))


@blueprint.get("/query/services/<serviceName>/endpoints/<endpoint:endpointName>/traces", merge_slashes=False)
@operation(summary="Recent failed and slowest requests of one endpoint.", args=schemas.EndpointTracesArgs,
           response=schemas.EndpointTracesSchema, path_params={**SERVICE_PARAM, **ENDPOINT_PARAM})
def endpoint_traces(serviceName: str, endpointName: str) -> Response:  # camelCase as in the seed
    """The most recent failed requests and the slowest requests of the endpoint, each with its trace id; default
    range: the last hour."""
    service = params.path_text(serviceName, "serviceName")
    endpoint = params.path_text(endpointName, "endpointName", 1024)
    return jsonify(params.query_service().endpoint_traces(params.load(
        _ENDPOINT_TRACES_ARGS, EndpointTracesRequest, service=service, endpoint=endpoint)))
