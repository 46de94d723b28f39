"""`/metrics` of the web process, and the per-request counters behind it."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from panopticon import telemetry
from panopticon.api.openapi import operation
from panopticon.api.params import query_service
from panopticon.exceptions import StorageError

log = logging.getLogger(__name__)

blueprint = Blueprint("prometheus", __name__)


@blueprint.get("/metrics")
@operation(summary="Prometheus metrics of this process (text exposition format).", response={"type": "string"},
           media_types=("text/plain",), errors=(401,))
def metrics() -> Response:
    """Every metric is named once in panopticon/telemetry.py; OPERATIONS.md says how to read them."""
    refresh_rollup_gauges()
    refresh_alert_gauges()
    return Response(generate_latest(telemetry.REGISTRY), mimetype=CONTENT_TYPE_LATEST)


def refresh_rollup_gauges() -> None:
    """Read the progress the rollup job stored, so the gauges say how far rollups are complete now and what
    the last run found. The workers that roll serve no metrics of their own; the engine holds their progress.

    When the engine does not answer the gauges keep their last values; the web process's own /readyz
    says the engine is down.
    """
    service = query_service()
    if not service.settings.rollup_enabled:
        return
    try:
        progress = service.rollup_progress()
    except StorageError as exc:
        log.warning("rollup gauges not refreshed: %s", exc)
        return
    if progress.mark_ms is None:
        return
    telemetry.ROLLUP_WATERMARK.set(progress.mark_ms / 1000)
    telemetry.ROLLUP_LAG.set(max(0, service.clock() - progress.mark_ms) / 1000)
    last = progress.last_run
    telemetry.ROLLUP_LATE_WINDOWS.set(float(last.get("late_windows", 0)))
    telemetry.ROLLUP_MAX_LATENESS.set(float(last.get("max_lateness_s", 0.0)))
    telemetry.ROLLUP_PENDING.set(1.0 if progress.cut_ms is not None else 0.0)
    try:
        error_mark = service.error_rollup_mark()
    except StorageError as exc:
        log.warning("error rollup gauge not refreshed: %s", exc)
        return
    if error_mark is not None:
        telemetry.ERROR_ROLLUP_LAG.set(max(0, service.clock() - error_mark) / 1000)


def refresh_alert_gauges() -> None:
    """Rules by state, the last evaluation, notifications by status: read from alerts-apm at scrape."""
    service = query_service()
    if not service.rules.rules:
        return
    try:
        found = service.alert_figures()
    except StorageError as exc:
        log.warning("alert gauges not refreshed: %s", exc)
        return
    for state, count in found["states"].items():
        telemetry.ALERT_RULES.labels(state).set(count)
    for status, count in found["deliveries"].items():
        telemetry.ALERT_NOTIFICATIONS.labels(status).set(count)
    if found["last_at_ms"] is not None:
        telemetry.ALERT_LAST_EVALUATION.set(found["last_at_ms"] / 1000)
    last = found["last_run"]
    telemetry.ALERT_EVALUATION_SECONDS.set(float(last.get("seconds", 0.0)))
    telemetry.ALERT_EVALUATION_CPU.set(float(last.get("cpu_seconds", 0.0)))
    telemetry.ALERT_NOT_EVALUATED.set(float(last.get("not_evaluated", 0)))


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
