"""The Zipkin v2 API (`/api/v2/...`) as the Zipkin UI (Lens) and Grafana's Zipkin data source call it.

Units are Zipkin's: `endTs` / `lookback` in epoch milliseconds, `minDuration` / `maxDuration` in microseconds,
span `timestamp` / `duration` in microseconds. Every route is also served under `/zipkin/api/v2/...`, where
Lens (served at `/zipkin/`, `api/lens.py`) looks for its API. Errors are plain text with the status, as
zipkin-server answers (see `errors.envelope`). Unknown parameters are ignored, as Zipkin ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, jsonify

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.exceptions import InvalidParameter
from panopticon.query.compat import AUTOCOMPLETE_FIELDS, split_annotation_query
from panopticon.query.requests import CompatTraceSearch

blueprint = Blueprint("zipkin", __name__)

QUERY_LOOKBACK_MS = 86_400_000  # zipkin-server's QUERY_LOOKBACK default: one day
_ERRORS: dict[str, Any] = dict(error_schema={"type": "string"}, error_media="text/plain")
_STRINGS = {"type": "array", "items": {"type": "string"}}
_SPANS = {"type": "array", "items": {"$ref": "#/components/schemas/ZipkinSpan"}}
_TRACES = {"type": "array", "items": _SPANS}
TRACE_PATH = {"traceId": {"type": "string", "minLength": 1, "maxLength": 128, "description": "Trace id."}}
PREFIXES = ("/api/v2", "/zipkin/api/v2")


def route(path: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """The view at `/api/v2<path>` and, for Lens, at `/zipkin/api/v2<path>` (another endpoint name)."""
    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        blueprint.add_url_rule(f"{PREFIXES[0]}{path}", view.__name__, view, methods=["GET"])
        blueprint.add_url_rule(f"{PREFIXES[1]}{path}", f"lens_{view.__name__}", view, methods=["GET"])
        return view
    return register


def _required(args: dict[str, Any], name: str) -> Any:
    value = args.get(name)
    if value in (None, ""):
        raise InvalidParameter(name, f"{name} is required")
    return value


@route("/services")
@operation(summary="Zipkin: every service.", response=_STRINGS, errors=(401, 503), **_ERRORS)
def services() -> Response:
    """Services with stored spans."""
    return jsonify(params.query_service().service_names())


@route("/spans")
@operation(summary="Zipkin: span names of one service.", args=schemas.ZipkinServiceArgs, response=_STRINGS,
           **_ERRORS)
def span_names() -> Response:
    """Every span name of `serviceName` (required)."""
    service = _required(params.load_args(schemas.ZipkinServiceArgs()), "serviceName")
    return jsonify(sorted({name for name, _ in params.query_service().operations(service)}))


@route("/remoteServices")
@operation(summary="Zipkin: services (and databases, queues, external APIs) one service calls.",
           args=schemas.ZipkinServiceArgs, response=_STRINGS, **_ERRORS)
def remote_services() -> Response:
    """The callees of `serviceName` in the service map of the last day (QUERY_LOOKBACK)."""
    service = _required(params.load_args(schemas.ZipkinServiceArgs()), "serviceName")
    return jsonify(params.query_service().remote_services(service, QUERY_LOOKBACK_MS))


@route("/traces")
@operation(summary="Zipkin: search traces.", args=schemas.ZipkinTracesArgs, response=_TRACES, **_ERRORS)
def traces() -> Response:
    """Whole traces with a span matching serviceName, remoteServiceName, spanName, annotationQuery and duration
    (microseconds), started in [endTs - lookback, endTs) (milliseconds; default the last day), newest first."""
    args = params.load_args(schemas.ZipkinTracesArgs())
    low, high = args.get("minDuration"), args.get("maxDuration")
    if low is not None and high is not None and high < low:
        raise InvalidParameter("maxDuration", "maxDuration must be at least minDuration")
    span_name = args.get("spanName") or None
    search = CompatTraceSearch(
        default_lookback_ms=QUERY_LOOKBACK_MS, limit=args["limit"], end_ms=args.get("endTs"),
        lookback_ms=args.get("lookback"), service=args.get("serviceName") or None,
        operation=None if span_name == "all" else span_name,
        tags=split_annotation_query(args.get("annotationQuery") or ""),
        remote_service=args.get("remoteServiceName") or None,
        min_duration_ms=None if low is None else low / 1000, max_duration_ms=None if high is None else high / 1000)
    return jsonify(params.query_service().zipkin_traces(search))


@route("/trace/<traceId>")
@operation(summary="Zipkin: one trace.", response=_SPANS, path_params=TRACE_PATH, errors=(400, 401, 404, 503),
           **_ERRORS)
def trace(traceId: str) -> Response:  # Zipkin's own spelling of the path parameter
    """The trace's spans; 404 when no span carries the id."""
    trace_id = params.path_id(traceId, "traceId")
    found = params.query_service().zipkin_traces_by_id([trace_id])
    if not found:
        abort(404, description=f"{trace_id} not found")
    return jsonify(found[0])


@route("/traceMany")
@operation(summary="Zipkin: several traces by id.", args=schemas.ZipkinTraceManyArgs, response=_TRACES, **_ERRORS)
def trace_many() -> Response:
    """The traces named by `traceIds` (comma separated, required); ids with no span are left out."""
    text = _required(params.load_args(schemas.ZipkinTraceManyArgs()), "traceIds")
    ids = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not ids:
        raise InvalidParameter("traceIds", "traceIds is required")
    if len(ids) > 1000:
        raise InvalidParameter("traceIds", "at most 1000 ids")
    for trace_id in ids:
        params.path_id(trace_id, "traceIds")
    return jsonify(params.query_service().zipkin_traces_by_id(ids))


@route("/dependencies")
@operation(summary="Zipkin: service dependency links.", args=schemas.ZipkinDependenciesArgs,
           response={"type": "array", "items": schemas.ZipkinLinkSchema}, **_ERRORS)
def dependencies() -> Response:
    """`[{parent, child, callCount, errorCount}]` over [endTs - lookback, endTs) (milliseconds; endTs required,
    lookback default one day), from the service map."""
    args = params.load_args(schemas.ZipkinDependenciesArgs())
    end = _required(args, "endTs")
    links = params.query_service().dependency_links(end, args.get("lookback") or QUERY_LOOKBACK_MS)
    merged: dict[tuple[str, str], list[int]] = {}
    for link in links:
        counts = merged.setdefault((link["parent"], link["child"]), [0, 0])
        counts[0] += link["callCount"]
        counts[1] += link["errorCount"]
    return jsonify([{"parent": p, "child": c, "callCount": n, "errorCount": e}
                    for (p, c), (n, e) in sorted(merged.items())])


@route("/autocompleteKeys")
@operation(summary="Zipkin: tag keys whose values can be listed.", response=_STRINGS, errors=(401,), **_ERRORS)
def autocomplete_keys() -> Response:
    """Tags stored as indexed fields (environment, HTTP method / route / status, span kind)."""
    return jsonify(sorted(AUTOCOMPLETE_FIELDS))


@route("/autocompleteValues")
@operation(summary="Zipkin: values of one autocomplete key.", args=schemas.ZipkinAutocompleteArgs,
           response=_STRINGS, **_ERRORS)
def autocomplete_values() -> Response:
    """Every stored value of `key` (required); empty for a key that is not one of autocompleteKeys."""
    key = _required(params.load_args(schemas.ZipkinAutocompleteArgs()), "key")
    return jsonify(params.query_service().tag_values(key))
