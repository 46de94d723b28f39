"""`/healthz`: the process answers. `/readyz`: the search engine (and Redis, when used) answer too."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from panopticon.exceptions import StorageError

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():
    from panopticon.api.services import services

    try:
        checks = services(current_app).readiness()
    except StorageError:  # the engine could not even be asked what it is
        checks = {"search": False}
    ok = all(checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), (200 if ok else 503)
