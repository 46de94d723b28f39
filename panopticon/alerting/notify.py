"""What a notification says, in each format, and how it is sent. The payloads are pure; `post` is the HTTP call.

Every notification is built from one stored change (`alert`), and links to the dashboard's service page over
the rule's window (`/#/service/<name>?start=..&end=..&env=..`) and to sample traces (`/#/trace/<id>`):

* `json`: the alert object itself, plus `receiver`;
* `alertmanager`: the body Prometheus Alertmanager sends to its webhook receivers (version 4), so existing
  receivers of that format (chat bridges, incident tools) take it as it is;
* the live stream: `{"event": "alert", "id": <change id>, "alert": {...}}` on ERROR_LOG_CHANNEL.

`post` answers "delivered", "retry" (connection refused or reset, a time-out, 408, 429 or 5xx: the receiver may
take it later) or "refused" (any other status: sending it again cannot help), with what happened.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from typing import Any, Literal
from urllib.parse import quote, urlencode

import orjson

from panopticon.alert_rules import Receiver, Rule
from panopticon.model.times import iso_to_ms
from panopticon.settings import Settings

Outcome = Literal["delivered", "retry", "refused"]
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"
LINK_MARGIN_MS = 15 * 60_000  # the service page opens on the rule's window and a quarter of an hour before it


def dashboard_url(settings: Settings) -> str:
    return settings.alert_dashboard_url or f"http://127.0.0.1:{settings.api_port}"


def links(settings: Settings, rule: Rule, at_ms: int, trace_ids: list[str]) -> dict[str, Any]:
    """The dashboard pages worth opening for this change."""
    base = dashboard_url(settings)
    window = {"start": at_ms - rule.window_ms - LINK_MARGIN_MS, "end": at_ms}
    if rule.environment:
        window["env"] = rule.environment  # type: ignore[assignment]  # the page's own name for it
    page = f"#/service/{quote(rule.service, safe='')}" if rule.service else "#/services"
    return {"service": f"{base}/{page}?{urlencode(window)}",
            "traces": [f"{base}/#/trace/{quote(trace_id, safe='')}" for trace_id in trace_ids]}


def describe(rule: Rule, state: str, value: float | None) -> str:
    """One line for people."""
    what = {"latency": f"{rule.percentile} latency", "error_rate": "error rate", "request_rate": "requests per minute",
            "new_error_group": "new error groups", "error_group_count": "errors of one group"}[rule.type]
    scope = " / ".join(part for part in (rule.service, rule.environment, rule.endpoint) if part) or "all services"
    shown = "no data" if value is None else f"{value:.4g}"
    verb = "is" if state == "firing" else "was"
    return f"[{state.upper()}] {rule.name}: {what} of {scope} {verb} {shown} ({rule.comparison} {rule.threshold:g} " \
           f"over {rule.as_dict()['window']})"


def alert(change: dict[str, Any]) -> dict[str, Any]:
    """The alert object of a stored change: the live stream's event and the JSON webhook's body."""
    return {"id": change.get("change_id"), **{key: change.get(key) for key in (
        "rule", "rule_type", "state", "previous", "at", "active_since", "value", "threshold", "comparison",
        "severity", "service_name", "environment", "endpoint", "summary", "description", "labels", "detail",
        "links")}}


def json_body(change: dict[str, Any], receiver: Receiver) -> bytes:
    return orjson.dumps({"receiver": receiver.name, **alert(change)})


def _labels(change: dict[str, Any]) -> dict[str, str]:
    labels = {"alertname": str(change["rule"]), "severity": str(change.get("severity") or "warning"),
              "rule_type": str(change.get("rule_type"))}
    for key, name in (("service_name", "service"), ("environment", "environment"), ("endpoint", "endpoint")):
        if change.get(key):
            labels[name] = str(change[key])
    labels.update({str(k): str(v) for k, v in (change.get("labels") or {}).items()})
    return labels


def alertmanager_body(change: dict[str, Any], receiver: Receiver, external_url: str) -> bytes:
    """The Alertmanager webhook body (version 4) for one change of one rule."""
    labels = _labels(change)
    state = "firing" if change["state"] == "firing" else "resolved"
    link = (change.get("links") or {}).get("service", external_url)
    traces = (change.get("links") or {}).get("traces") or []
    annotations = {"summary": str(change.get("summary") or ""), "description": str(change.get("description") or ""),
                   "dashboard": link}
    if traces:
        annotations["traces"] = " ".join(traces)
    starts = change.get("active_since") or change["at"]
    item = {"status": state, "labels": labels, "annotations": annotations, "startsAt": starts,
            "endsAt": change["at"] if state == "resolved" else ZERO_TIME, "generatorURL": link,
            "fingerprint": hashlib.sha256(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]}
    group_labels = {"alertname": labels["alertname"]}
    return orjson.dumps({
        "version": "4", "groupKey": f'{{}}:{{alertname="{labels["alertname"]}"}}', "truncatedAlerts": 0,
        "status": state, "receiver": receiver.name, "groupLabels": group_labels, "commonLabels": labels,
        "commonAnnotations": annotations, "externalURL": external_url, "alerts": [item]})


def body_for(change: dict[str, Any], receiver: Receiver, settings: Settings) -> bytes:
    if receiver.format == "alertmanager":
        return alertmanager_body(change, receiver, dashboard_url(settings))
    return json_body(change, receiver)


def post(receiver: Receiver, body: bytes, timeout_s: float) -> tuple[Outcome, str]:
    """POST the body; (outcome, what happened)."""
    headers = {"Content-Type": "application/json", "User-Agent": "panopticon-alerts", **dict(receiver.headers)}
    request = urllib.request.Request(receiver.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 - the operator's URL
            answer.read(65_536)
            return "delivered", f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        status = exc.code
        outcome: Outcome = "retry" if status in (408, 425, 429) or status >= 500 else "refused"
        return outcome, f"HTTP {status} {exc.reason}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return "retry", f"{type(exc).__name__}: {reason}"


def backoff_s(attempts: int, settings: Settings) -> float:
    """Seconds before retry number `attempts` (1, 2, ...): the first wait, doubled each time, up to the cap."""
    return float(min(settings.alert_retry_max_seconds, settings.alert_retry_first_seconds * 2 ** (attempts - 1)))


def expired(change_at: str, now_ms: int, settings: Settings) -> bool:
    """The notification has waited longer than ALERT_GIVE_UP_SECONDS since its change."""
    return now_ms - iso_to_ms(change_at) > settings.alert_give_up_seconds * 1000

