"""ALERT_RULES_FILE: a good file, and each kind of mistake named by rule and field in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from panopticon.alert_rules import Receiver, parse_rules
from panopticon.alerting.notify import alertmanager_body, backoff_s, json_body, links
from panopticon.exceptions import ConfigError
from panopticon.settings import load_settings

GOOD = """
receivers:
  - {name: ops, url: "http://127.0.0.1:9000/hook"}
  - {name: am, url: "https://am.example/api/v2/webhook", format: alertmanager, headers: {Authorization: "Bearer x"}}
defaults: {window: 10m, for: 1m}
rules:
  - {name: checkout-p95, type: latency, service: checkout, environment: production, threshold: 800}
  - {name: checkout-errors, type: error_rate, service: checkout, threshold: 0.05, min_requests: 20, receivers: [am]}
  - {name: orders-floor, type: request_rate, service: orders, endpoint: "POST /orders", threshold: 5, for: 0s}
  - {name: new-groups, type: new_error_group, service: checkout, window: 15m}
  - {name: one-group, type: error_group_count, fingerprint: 0123456789abcdef, threshold: 100, severity: critical,
     labels: {team: payments}, summary: "Payments failing"}
"""


def test_a_good_file() -> None:
    rules = parse_rules(GOOD, "rules.yaml")
    assert [r.name for r in rules.rules] == ["checkout-p95", "checkout-errors", "orders-floor", "new-groups",
                                              "one-group"]
    p95, errors, floor, new, group = rules.rules
    assert (p95.percentile, p95.threshold, p95.window_ms, p95.for_ms, p95.receivers) == (
        "p95", 800.0, 600_000, 60_000, ("ops", "am"))
    assert (errors.min_requests, errors.receivers, floor.for_ms, floor.comparison) == (20, ("am",), 0, "below")
    assert (new.threshold, new.window_ms, group.labels, group.severity) == (0.0, 900_000, (("team", "payments"),),
                                                                             "critical")
    assert rules.receiver("am") == Receiver("am", "https://am.example/api/v2/webhook", "alertmanager",
                                            (("Authorization", "Bearer x"),))
    assert rules.receiver("am").as_dict()["headers"] == ["Authorization"], "values are never shown"


BAD = [
    ("rules: [{name: a, type: latency, threshold: high}]", "rules[0] (a): threshold: expected a number"),
    ("rules: [{name: a, type: latency}]", "rules[0] (a): threshold: is required"),
    ("rules: [{name: a, type: slowness, threshold: 1}]", "rules[0] (a): type: expected one of latency"),
    ("rules: [{name: a, type: latency, threshold: 1, percentile: p42}]", "rules[0] (a): percentile"),
    ("rules: [{name: a, type: latency, threshold: 1, window: fortnight}]", "rules[0] (a): window: expected a duration"),
    ("rules: [{name: a, type: latency, threshold: 1, window: 1s}]", "rules[0] (a): window: must be between"),
    ("rules: [{name: a, type: latency, threshold: 1, for: -1m}]", "rules[0] (a): for: expected a duration"),
    ("rules: [{name: a, type: error_rate, threshold: 5}]", "rules[0] (a): threshold: must be at least 0 and at most 1"),
    ("rules: [{name: a, type: latency, threshold: 1, endpoint: /x}]", "rules[0] (a): endpoint: needs a service"),
    ("rules: [{name: a, type: latency, threshold: 1, colour: red}]", "rules[0] (a): colour: unknown field"),
    ("rules: [{name: a, type: latency, threshold: 1, receivers: [pager]}]", "receivers: no receiver named 'pager'"),
    ("rules: [{name: a, type: error_group_count, threshold: 1, fingerprint: xyz}]", "rules[0] (a): fingerprint"),
    ("rules: [{name: 'a b', type: latency, threshold: 1}]", "rules[0] (a b): name: must be 1-128"),
    ("rules: [{name: a, type: latency, threshold: 1}, {name: a, type: latency, threshold: 2}]",
     "rules[1] (a): name: is used twice"),
    ("receivers: [{name: ops, url: 'ftp://x'}]", "receivers[0] (ops): url: expected an http"),
    ("receivers: [{name: ops, url: 'http://x', format: xml}]", "receivers[0] (ops): format"),
    ("receivers: [{name: websocket, url: 'http://x'}]", "receivers[0] (websocket): name"),
    ("rules: {a: 1}", "rules: expected a list"),
    ("alerts: []", "alerts: unknown field"),
    ("rules: [{name: a, type: latency, threshold: 1}\n  - oops", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "says"), BAD, ids=[b[1][:40] for b in BAD])
def test_each_mistake_is_named(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_rules(text, "/etc/rules.yaml")
    message = str(refused.value)
    assert message.startswith("ALERT_RULES_FILE=/etc/rules.yaml: ") and says in message, message
    assert "\n" not in message


def test_a_bad_file_stops_a_process_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(textwrap.dedent("""
        rules:
          - name: checkout-p95
            type: latency
            threshold: high
    """))
    script = ("from panopticon.settings import load_or_exit; from panopticon.alert_rules import rules_or_exit; "
              "rules_or_exit(load_or_exit())")
    done = subprocess.run([sys.executable, "-c", script], env={"ALERT_RULES_FILE": str(bad), "PATH": "/usr/bin"},
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"panopticon: configuration error: ALERT_RULES_FILE={bad}: rules[0] (checkout-p95): threshold: expected a "
        "number, got 'high'"]


def test_payloads_link_to_the_service_page_and_traces() -> None:
    settings = load_settings({"ALERT_DASHBOARD_URL": "https://apm.example/"}, root=Path("/nonexistent"))
    rule = parse_rules(GOOD).rules[0]
    found = links(settings, rule, 1_714_564_800_000, ["t1"])
    assert found["service"].startswith("https://apm.example/#/service/checkout?start=")
    assert "env=production" in found["service"] and found["traces"] == ["https://apm.example/#/trace/t1"]
    change = {"change_id": "change:checkout-p95:2", "rule": "checkout-p95", "rule_type": "latency", "state": "resolved",
              "previous": "firing", "at": "2024-05-01T12:10:00.000Z", "active_since": None, "severity": "warning",
              "service_name": "checkout", "environment": "production", "labels": {"team": "x"}, "links": found,
              "summary": "slow", "description": "[RESOLVED] ..."}
    body = orjson.loads(alertmanager_body(change, Receiver("am", "http://x", "alertmanager"), "https://apm.example"))
    assert body["version"] == "4" and body["status"] == "resolved" and body["receiver"] == "am"
    item = body["alerts"][0]
    assert item["labels"] == {"alertname": "checkout-p95", "severity": "warning", "rule_type": "latency",
                              "service": "checkout", "environment": "production", "team": "x"}
    assert item["endsAt"] == "2024-05-01T12:10:00.000Z" and item["generatorURL"] == found["service"]
    assert item["annotations"]["traces"] == "https://apm.example/#/trace/t1"
    plain = orjson.loads(json_body(change, Receiver("ops", "http://x")))
    assert plain["id"] == "change:checkout-p95:2" and plain["receiver"] == "ops" and plain["links"] == found


def test_retries_back_off_to_a_cap() -> None:
    settings = load_settings({"ALERT_RETRY_FIRST_SECONDS": "10", "ALERT_RETRY_MAX_SECONDS": "120"},
                             root=Path("/nonexistent"))
    assert [backoff_s(n, settings) for n in range(1, 7)] == [10, 20, 40, 80, 120, 120]
