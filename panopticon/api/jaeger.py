"""The Jaeger query API (`/api/...`) as the Jaeger UI and Grafana's Jaeger data source call it.

Units are Jaeger's: search `start` / `end` in epoch microseconds, durations as Go durations (`100ms`, `1.5s`),
`tags` a JSON object of strings; `dependencies` takes `endTs` / `lookback` in milliseconds. Answers are
Jaeger's `{"data", "total", "limit", "offset", "errors"}`; errors too (`errors: [{code, msg}]`, see
`errors.envelope`). Trace by id tolerates `start` / `end` in milliseconds (Grafana's `traceIdTimeParams` sends
milliseconds where Jaeger takes microseconds) and uses them as a hint only: the trace is found by its id.
Unknown parameters are ignored, as Jaeger ignores them.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Blueprint, Response, abort, jsonify, request

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.exceptions import InvalidParameter
from panopticon.query.requests import CompatTraceSearch

blueprint = Blueprint("jaeger", __name__)

DEFAULT_LIMIT = 100  # Jaeger's defaultQueryLimit
DEFAULT_LOOKBACK_MS = 2 * 86_400_000  # Jaeger's default trace query lookback: two days
DEPENDENCY_LOOKBACK_MS = 86_400_000  # Jaeger's defaultDependencyLookbackDuration
_GO_UNITS_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0,
                "h": 3_600_000.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_LOOKBACK = re.compile(r"(\d{1,6})([smhdw])\Z")
_LOOKBACK_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_KINDS = ("server", "client", "producer", "consumer", "internal")
_ERRORS: dict[str, Any] = dict(error_schema="JaegerErrorResponse")
SERVICE_PATH = {"service": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Service name."}}
TRACE_PATH = {"traceID": {"type": "string", "minLength": 1, "maxLength": 128, "description": "Trace id."}}


def go_duration_ms(text: str, parameter: str) -> float:
    """A Go duration (`100ms`, `1.5s`, `1h30m`, `250us`) in milliseconds."""
    value = text.strip()
    position, total = 0, 0.0
    for match in _GO_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _GO_UNITS_MS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise InvalidParameter(parameter, f"expected a duration such as 100ms, 1.5s or 2m, got {text[:64]!r}")
    return total


def lookback_ms(text: str | None) -> int | None:
    """Jaeger UI's `lookback` (`1h`, `2d`); None for `custom` or nothing (start and end decide)."""
    if not text or text == "custom":
        return None
    match = _LOOKBACK.match(text.strip())
    if not match:
        raise InvalidParameter("lookback", f"expected 1h, 2d, ... or custom, got {text[:32]!r}")
    return int(match.group(1)) * _LOOKBACK_MS[match.group(2)]


def _us_to_ms(value: int | None) -> int | None:
    return None if value is None else value // 1000


def structured(data: Any, *, total: int | None = None) -> Response:
    """Jaeger's answer envelope."""
    return jsonify(data=data, total=len(data) if total is None and isinstance(data, list) else (total or 0),
                   limit=0, offset=0, errors=None)


def _tags(args: dict[str, Any]) -> tuple[tuple[str, str | None], ...]:
    out: dict[str, str] = {}
    for text in request.args.getlist("tag"):
        key, sep, value = text.partition(":")
        if not sep or not key:
            raise InvalidParameter("tag", f"expected key:value, got {text[:64]!r}")
        out[key] = value
    if args.get("tags"):
        try:
            loaded = orjson.loads(args["tags"])
        except orjson.JSONDecodeError:
            raise InvalidParameter("tags", "expected a JSON object such as {\"error\":\"true\"}") from None
        if not isinstance(loaded, dict):
            raise InvalidParameter("tags", "expected a JSON object such as {\"error\":\"true\"}")
        for key, value in loaded.items():
            if isinstance(value, dict | list) or value is None:
                raise InvalidParameter("tags", f"the value of {key!r} must be a string")
            out[str(key)] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return tuple(sorted(out.items()))


@blueprint.get("/api/services")
@operation(summary="Jaeger: every service.", response=schemas.JaegerNamesSchema, errors=(401, 503), **_ERRORS)
def services() -> Response:
    """Services with stored spans."""
    return structured(params.query_service().service_names())


def _operation_names(service: str) -> list[str]:
    return sorted({name for name, _ in params.query_service().operations(service)})


@blueprint.get("/api/services/<service>/operations")
@operation(summary="Jaeger: span names of one service (the older UI's call).", response=schemas.JaegerNamesSchema,
           path_params=SERVICE_PATH, errors=(400, 401, 503), **_ERRORS)
def service_operations(service: str) -> Response:
    """Every span name of the service, whatever its kind."""
    return structured(_operation_names(params.path_text(service, "service")))


@blueprint.get("/api/operations")
@operation(summary="Jaeger: operations of one service, of one span kind.", args=schemas.JaegerOperationsArgs,
           response=schemas.JaegerOperationsSchema, **_ERRORS)
def operations() -> Response:
    """`[{name, spanKind}]`; `service` is required (400 without it), `spanKind` optional (server, client, ...)."""
    args = params.load_args(schemas.JaegerOperationsArgs())
    service = args.get("service")
    if not service:
        raise InvalidParameter("service", "parameter 'service' is required")
    kind = (args.get("spanKind") or "").lower() or None
    if kind is not None and kind not in _KINDS:
        raise InvalidParameter("spanKind", f"must be one of {', '.join(_KINDS)}")
    found = params.query_service().operations(service, kind.upper() if kind else None)
    return structured([{"name": name, "spanKind": (k or "").lower()} for name, k in found])


@blueprint.get("/api/traces")
@operation(summary="Jaeger: search traces.", args=schemas.JaegerTracesArgs, response=schemas.JaegerTracesSchema,
           **_ERRORS)
def traces() -> Response:
    """Whole traces with a span matching service, operation, tags, duration and time (`start` / `end` in
    microseconds, default the last two days or `lookback`); or the traces named by `traceID`."""
    args = params.load_args(schemas.JaegerTracesArgs())
    query = params.query_service()
    trace_ids = [t for t in request.args.getlist("traceID") if t]
    if trace_ids:
        for trace_id in trace_ids:
            params.path_id(trace_id, "traceID")
        return structured(query.jaeger_traces_by_id(trace_ids))
    if not args.get("service"):
        raise InvalidParameter("service", "parameter 'service' is required")
    low = go_duration_ms(args["minDuration"], "minDuration") if args.get("minDuration") else None
    high = go_duration_ms(args["maxDuration"], "maxDuration") if args.get("maxDuration") else None
    if low is not None and high is not None and high < low:
        raise InvalidParameter("maxDuration", "'maxDuration' should be greater than 'minDuration'")
    search = CompatTraceSearch(
        default_lookback_ms=DEFAULT_LOOKBACK_MS, limit=args.get("limit") or DEFAULT_LIMIT,
        start_ms=_us_to_ms(args.get("start")), end_ms=_us_to_ms(args.get("end")),
        lookback_ms=lookback_ms(args.get("lookback")), service=args["service"], operation=args.get("operation") or None,
        tags=_tags(args), min_duration_ms=low, max_duration_ms=high)
    return structured(query.jaeger_traces(search))


@blueprint.get("/api/traces/<traceID>")
@operation(summary="Jaeger: one trace.", args=schemas.JaegerTraceArgs, response=schemas.JaegerTracesSchema,
           path_params=TRACE_PATH, errors=(400, 401, 404, 503), **_ERRORS)
def trace(traceID: str) -> Response:  # Jaeger's own spelling of the path parameter
    """`data[0]` is the trace; 404 when no span carries the id."""
    trace_id = params.path_id(traceID, "traceID")
    params.load_args(schemas.JaegerTraceArgs())  # start / end checked as numbers, either unit
    found = params.query_service().jaeger_traces_by_id([trace_id])
    if not found:
        abort(404, description="trace not found")
    return structured(found)


@blueprint.get("/api/dependencies")
@operation(summary="Jaeger: service dependencies.", args=schemas.JaegerDependenciesArgs,
           response=schemas.JaegerDependenciesSchema, **_ERRORS)
def dependencies() -> Response:
    """`[{parent, child, callCount}]` over [endTs - lookback, endTs) (milliseconds; default the last day), from
    the service map."""
    args = params.load_args(schemas.JaegerDependenciesArgs())
    links = params.query_service().dependency_links(args.get("endTs"), args.get("lookback") or DEPENDENCY_LOOKBACK_MS)
    service = args.get("service")
    merged: dict[tuple[str, str], int] = {}
    for link in links:
        if not service or service in (link["parent"], link["child"]):
            merged[(link["parent"], link["child"])] = merged.get((link["parent"], link["child"]), 0) + link["callCount"]
    return structured([{"parent": p, "child": c, "callCount": n} for (p, c), n in sorted(merged.items())], total=0)
