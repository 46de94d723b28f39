"""Statistics routes: a service's time series, the services overview, endpoint ranking, endpoint traces.

Aggregated answers are cached in Redis under their rounded question (see `panopticon.query.cache`);
the `X-Cache` header says `hit`, `miss`, or `off` (no REDIS_HOST).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from werkzeug.routing import PathConverter

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.api.search import SERVICE_PARAM
from panopticon.exceptions import InvalidParameter
from panopticon.query import metrics
from panopticon.query.timeparse import UNITS_MS, TimeRange, parse_duration, round_out

blueprint = Blueprint("metrics", __name__)

_METRICS_ARGS = schemas.MetricsArgs()
_RANKING_ARGS = schemas.RankingArgs()
_ENDPOINT_TRACES_ARGS = schemas.EndpointTracesArgs()
# Rankings are rounded to whole minutes: refreshes within a minute share one cached answer.
RANKING_STEP_MS = UNITS_MS["m"]
ENDPOINT_PARAM = {"endpointName": {"type": "string", "minLength": 1, "maxLength": 1024,
                                   "description": "Endpoint: http.route, else the span name (URL-encoded)."}}


class EndpointConverter(PathConverter):
    """Endpoint names are routes such as `/api/users/:id`: slashes included, a leading one too."""

    regex = r"[\s\S]+?"  # any character, newlines too
    part_isolating = False  # werkzeug would infer True from a regex without '/'


def _cached(kind: str, question: dict[str, Any], compute) -> Response:
    answer, outcome = params.answer_cache().get_or_compute(kind, question, compute)
    response = jsonify(answer)
    response.headers["X-Cache"] = outcome
    return response


def _interval(args: dict[str, Any], window: TimeRange) -> int:
    config = params.settings()
    if args.get("interval") is None:
        return metrics.choose_interval(window, config.query_max_buckets)
    interval_ms = parse_duration(args["interval"], "interval")
    if interval_ms < UNITS_MS["s"] or interval_ms % UNITS_MS["s"]:
        raise InvalidParameter("interval", "must be a whole number of seconds, at least 1s")
    if interval_ms > config.query_max_range_days * UNITS_MS["d"]:
        raise InvalidParameter("interval", f"must be at most {config.query_max_range_days}d (QUERY_MAX_RANGE_DAYS)")
    return interval_ms


@blueprint.get("/query/services/<serviceName>/metrics")
@operation(summary="Time series of requests, p50/p90/p95 latency and error rate.", args=schemas.MetricsArgs,
           response=schemas.MetricsSchema, path_params=SERVICE_PARAM)
def service_metrics(serviceName: str) -> Response:  # the seed names path parameters in camelCase
    """Requests, errors, error rate and p50/p90/p95 per bucket; default range: the last hour. The range is widened
    to whole intervals (see `from` / `to`). Cached in Redis (X-Cache)."""
    service = params.path_text(serviceName, "serviceName")
    args = params.load_args(_METRICS_ARGS)
    window = params.window(args, "1h")
    interval_ms = _interval(args, window)
    window = round_out(window, interval_ms)
    metrics.check_buckets(window, interval_ms, params.settings().query_max_buckets)
    scope = metrics.Scope(service, args.get("environment"), args.get("endpoint"))
    question = {"scope": [scope.service, scope.environment, scope.endpoint], "from": window.start_ms,
                "to": window.end_ms, "interval": interval_ms}
    return _cached("series", question, lambda: metrics.time_series(
        params.store(), scope, window, interval_ms, timeout=params.timeout()))


def _ranking_args() -> tuple[dict[str, Any], TimeRange, int]:
    args = params.load_args(_RANKING_ARGS)
    window = round_out(params.window(args, "1h"), RANKING_STEP_MS)
    return args, window, params.page_limit(args)


@blueprint.get("/query/services")
@operation(summary="Every service with its requests, p95 and error rate.", args=schemas.RankingArgs,
           response=schemas.ServicesSchema)
def services_overview() -> Response:
    """Per service: requests, errors, error rate, p50/p90/p95 in the range (default: the last hour); sort, search
    (substring of the name), limit. Cached in Redis (X-Cache)."""
    args, window, limit = _ranking_args()
    scope = metrics.Scope(environment=args.get("environment"))
    question = {"env": scope.environment, "search": args.get("search"), "sort": args["sort"],
                "order": args["order"], "limit": limit, "from": window.start_ms, "to": window.end_ms}
    return _cached("services", question, lambda: metrics.ranking(
        params.store(), scope, window, "service", sort=args["sort"], order=args["order"], limit=limit,
        search=args.get("search"), timeout=params.timeout()))


@blueprint.get("/query/services/<serviceName>/endpoints")
@operation(summary="Endpoint ranking of one service.", args=schemas.RankingArgs, response=schemas.EndpointsSchema,
           path_params=SERVICE_PARAM)
def service_endpoints(serviceName: str) -> Response:  # the seed names path parameters in camelCase
    """Per endpoint of the service: requests, errors, error rate, p50/p90/p95 (default range: the last hour); sort,
    search (substring of the endpoint), limit. Cached in Redis (X-Cache)."""
    service = params.path_text(serviceName, "serviceName")
    args, window, limit = _ranking_args()
    scope = metrics.Scope(service, args.get("environment"))
    question = {"service": service, "env": scope.environment, "search": args.get("search"), "sort": args["sort"],
                "order": args["order"], "limit": limit, "from": window.start_ms, "to": window.end_ms}

    def compute() -> dict[str, Any]:
        answer = metrics.ranking(params.store(), scope, window, "endpoint", sort=args["sort"], order=args["order"],
                                 limit=limit, search=args.get("search"), timeout=params.timeout())
        return {"service_name": service, **answer}

    return _cached("endpoints", question, compute)


@blueprint.get("/query/services/<serviceName>/endpoints/<endpoint:endpointName>/traces", merge_slashes=False)
@operation(summary="Recent failed and slowest requests of one endpoint.", args=schemas.EndpointTracesArgs,
           response=schemas.EndpointTracesSchema, path_params={**SERVICE_PARAM, **ENDPOINT_PARAM})
def endpoint_traces(serviceName: str, endpointName: str) -> Response:  # camelCase as in the seed
    """The most recent failed requests and the slowest requests of the endpoint, each with its trace id; default
    range: the last hour."""
    service = params.path_text(serviceName, "serviceName")
    endpoint = params.path_text(endpointName, "endpointName", 1024)
    args = params.load_args(_ENDPOINT_TRACES_ARGS)
    window = params.window(args, "1h")
    limit = params.page_limit(args)
    scope = metrics.Scope(service, args.get("environment"), endpoint)
    return jsonify(metrics.endpoint_traces(params.store(), scope, window, limit=limit, timeout=params.timeout()))
