"""`/metrics` of the web and ws processes, and the per-request counters behind it."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from panopticon import telemetry
from panopticon.api.openapi import operation

blueprint = Blueprint("prometheus", __name__)


@blueprint.get("/metrics")
@operation(summary="Prometheus metrics of this process (text exposition format).", response={"type": "string"},
           media_types=("text/plain",), errors=(401,))
def metrics() -> Response:
    """Every metric is named once in panopticon/telemetry.py; OPERATIONS.md says how to read them."""
    refresh = getattr(telemetry, "refresh_on_scrape", None)
    if refresh is not None:
        refresh()
    return Response(generate_latest(telemetry.REGISTRY), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Count every request by its route pattern (not its URL, which would explode the label set)."""
    app.register_blueprint(blueprint)

    @app.before_request
    def start_timer() -> None:
        g.started_at = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        telemetry.HTTP_REQUESTS.labels(route, str(response.status_code)).inc()
        if "started_at" in g:
            telemetry.HTTP_LATENCY.labels(route).observe(time.perf_counter() - g.started_at)
        return response
