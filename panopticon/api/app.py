"""`create_app(settings)`: blueprints, error envelope, security, request ids, docs and CLI commands."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from panopticon.alert_rules import rules_or_exit
from panopticon.api import (
    alerts,
    dashboard,
    dependencies,
    groups,
    health,
    jaeger,
    lens,
    metrics,
    openapi,
    prometheus,
    schemas,
    search,
    traces,
    zipkin,
)
from panopticon.api.errors import register_error_handlers
from panopticon.api.security import init_security
from panopticon.cli import register_commands
from panopticon.logs import request_id
from panopticon.query.service import QueryService
from panopticon.settings import Settings, load_or_exit

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")


def create_app(settings: Settings | None = None, query: QueryService | None = None) -> Flask:
    """The HTTP API; `query` is the service every route calls (built from `settings` when not given)."""
    settings = settings or load_or_exit()
    app = Flask("panopticon", static_folder=None)
    app.config["PANOPTICON_SETTINGS"] = settings
    # A bad ALERT_RULES_FILE stops start-up here with one line, as a bad variable does.
    app.extensions["panopticon.query"] = query or QueryService(settings, rules=rules_or_exit(settings))
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider has it; answers keep the documented field order
    app.url_map.converters["endpoint"] = metrics.EndpointConverter
    _init_request_ids(app)
    prometheus.init_app(app)
    init_security(app, settings)
    register_error_handlers(app)
    _document_health()
    for module in (health, traces, search, metrics, groups, alerts, dependencies, jaeger, zipkin, lens, openapi,
                   dashboard):
        app.register_blueprint(module.blueprint)
    register_commands(app)
    return app


def _document_health() -> None:
    openapi.operation(summary="The process is alive.", response=schemas.HealthSchema, errors=())(health.healthz)
    openapi.operation(summary="The search engine (and Redis, when configured) answer.", response=schemas.ReadySchema,
                      errors=(), other_responses={503: schemas.ReadySchema})(health.readyz)


def _init_request_ids(app: Flask) -> None:
    """Every request gets an id (the caller's X-Request-Id when sensible), logged and echoed back."""

    @app.before_request
    def assign_request_id() -> None:
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        g.request_id_token = request_id.set(g.request_id)

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-Id"] = g.request_id
        return response

    @app.teardown_request
    def forget_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id.reset(token)
