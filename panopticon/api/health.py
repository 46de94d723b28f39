"""`/healthz`: the process answers. `/readyz`: the search engine (and Redis, when used) answer too."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from panopticon.api.params import query_service

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = query_service().readiness()
    ok = all(checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), (200 if ok else 503)
