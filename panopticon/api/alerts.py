"""Alert routes: the rules of ALERT_RULES_FILE with their states, and the history of their state changes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from panopticon.api import params, schemas
from panopticon.api.openapi import operation
from panopticon.query.requests import AlertHistoryRequest

blueprint = Blueprint("alerts", __name__)

_HISTORY_ARGS = schemas.AlertHistoryArgs()


@blueprint.get("/query/alerts")
@operation(summary="Alert rules and their current states.", response=schemas.AlertsSchema)
def alert_rules() -> Response:
    """Every rule of ALERT_RULES_FILE with its state (inactive, pending, firing, resolved), since when, and the value
    of its last evaluation; the receivers (header values hidden)."""
    return jsonify(params.query_service().alerts())


@blueprint.get("/query/alerts/history")
@operation(summary="State changes of the alert rules, newest first.", args=schemas.AlertHistoryArgs,
           response=schemas.AlertHistorySchema)
def alert_history() -> Response:
    """Each change of state with its value, threshold and links; default range: the last 24 hours. Pages follow
    `next_cursor`."""
    return jsonify(params.query_service().alert_history(params.load(_HISTORY_ARGS, AlertHistoryRequest)))
