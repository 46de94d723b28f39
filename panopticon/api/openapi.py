"""`/openapi.json`, generated from the routes and their marshmallow schemas, and a browsable `/docs`.

Each view declares its contract with `@operation(...)`; the spec is built by walking the app's URL
map, so a route cannot exist without being documented (a test checks every rule appears). `/docs` is
Swagger UI served from the `swagger-ui-bundle` package's files: it works offline, with no CDN.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, send_from_directory
from marshmallow import Schema

from panopticon.api import schemas

blueprint = Blueprint("docs", __name__)

_ERRORS = {
    400: "A parameter is invalid or over a limit; `error.parameter` names it.",
    401: "API_AUTH_TOKENS is set and no valid bearer token was sent.",
    404: "Not found (or a path parameter that cannot be routed, such as a service name with '/').",
    503: "The search engine (or Redis) is not answering; see Retry-After.",
}
_RULE_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
View = TypeVar("View", bound=Callable[..., Any])
_ASSETS = ("swagger-ui.css", "index.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
           "favicon-32x32.png")


def operation(*, summary: str, response: type[Schema] | dict[str, Any], args: type[Schema] | None = None,
              path_params: dict[str, dict[str, Any]] | None = None, errors: tuple[int, ...] = (400, 401, 503),
              media_types: tuple[str, ...] = ("application/json",), description: str = "",
              other_responses: dict[int, type[Schema]] | None = None,
              error_schema: str | dict[str, Any] = "Error", error_media: str = "application/json",
              ) -> Callable[[View], View]:
    """Attach the OpenAPI description of one route to its view function.

    `response` is the schema of a 200 answer (a marshmallow Schema, or a JSON schema dict); errors are answered
    with `error_schema` (a component name, or a JSON schema) as `error_media` (the Jaeger and Zipkin APIs have
    their own);
    `path_params` maps each path parameter to its JSON schema (with a description); `other_responses`
    documents non-200 answers that are not the error envelope.
    """

    def attach(view: View) -> View:
        # Read back by build_spec; a function attribute mypy cannot know about.
        view.openapi = {  # type: ignore[attr-defined]
            "summary": summary, "response": response, "args": args, "path_params": path_params or {},
            "errors": errors, "media_types": media_types, "other": other_responses or {},
            "error_schema": error_schema, "error_media": error_media,
            "description": description or (view.__doc__ or "").strip()}
        return view

    return attach


def openapi_path(rule: str) -> str:
    """`/query/traces/<trace_id>` -> `/query/traces/{trace_id}`."""
    return _RULE_PARAMETER.sub(r"{\1}", rule)


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(title="Panopticon query API", version="1", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()], info={"description": "Read-only APM queries for dashboards."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=schemas.ErrorSchema)
    spec.components.schema("JaegerErrorResponse", schema=schemas.JaegerErrorResponseSchema)
    spec.components.schema("ZipkinSpan", schema=schemas.ZipkinSpanSchema)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        doc = getattr(view, "openapi", None)
        if doc is None:
            continue
        spec.path(path=openapi_path(rule.rule), operations={"get": _operation(doc, rule.endpoint)})
    return spec.to_dict()


def _operation(doc: dict[str, Any], endpoint: str) -> dict[str, Any]:
    parameters: list[Any] = [
        {"in": "path", "name": name, "required": True, "description": schema.get("description", ""),
         "schema": {k: v for k, v in schema.items() if k != "description"}}
        for name, schema in doc["path_params"].items()
    ]
    if doc["args"] is not None:
        parameters.append({"in": "query", "schema": doc["args"]})
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {
        media: {"schema": doc["response"]} for media in doc["media_types"]}}}
    errors = set(doc["errors"]) | ({404} if doc["path_params"] else set())
    for status in sorted(errors):
        responses[str(status)] = {"description": _ERRORS[status], "content": {
            doc["error_media"]: {"schema": doc["error_schema"]}}}
    for status, schema in doc["other"].items():
        responses[str(status)] = {"description": _ERRORS[status], "content": {"application/json": {"schema": schema}}}
    operation = {"operationId": endpoint.replace(".", "_"), "summary": doc["summary"], "parameters": parameters,
                 "responses": responses}
    if doc["description"]:
        operation["description"] = doc["description"]
    if 401 in doc["errors"]:
        operation["security"] = [{"bearer": []}, {}]
    return operation


@cache
def _assets_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@blueprint.get("/openapi.json")
@operation(summary="This document (OpenAPI 3.0).", response={"type": "object"}, errors=(401,))
def openapi_json() -> Response:
    """The OpenAPI description of every route, built from the code."""
    spec = current_app.extensions.get("panopticon.openapi")
    if spec is None:
        spec = current_app.extensions["panopticon.openapi"] = build_spec(current_app)
    return jsonify(spec)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Panopticon API</title>
<link rel="icon" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="stylesheet" href="docs/assets/index.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  plugins: [SwaggerUIBundle.plugins.DownloadUrl], layout: "StandaloneLayout"});
</script></body></html>
"""


@blueprint.get("/docs")
@operation(summary="Browsable API documentation (HTML, works offline).", response={"type": "string"},
           media_types=("text/html",), errors=(401,))
def docs() -> Response:
    """Swagger UI over /openapi.json."""
    return Response(_PAGE.replace('"docs/', '"/docs/').replace('"openapi.json"', '"/openapi.json"'),
                    mimetype="text/html")


@blueprint.get("/docs/assets/<name>")
@operation(summary="Static files of the docs page.", response={"type": "string", "format": "binary"},
           path_params={"name": {"type": "string", "enum": list(_ASSETS), "description": "File name."}},
           media_types=("text/css", "text/javascript", "application/javascript", "image/png"), errors=(401, 404))
def docs_asset(name: str) -> Response:
    """Swagger UI's own files, from the swagger-ui-bundle package."""
    if name not in _ASSETS:
        abort(404)
    return send_from_directory(_assets_dir(), name, max_age=3600)
