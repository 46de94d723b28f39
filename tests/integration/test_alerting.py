"""Alerting on the real stack: rules evaluated by beat on their own queue (the `alerts` worker), on real traffic
through the pipeline, notifying real HTTP receivers (servers in this test) in both formats and the live stream.

Waits are for conditions (a notification arrived, a state was stored), with generous limits that only turn a
hang into a failure; nothing asserts a duration. Evaluation and retry timing are set short here
(ALERT_INTERVAL_SECONDS, ALERT_RETRY_*): the rules' windows are seconds, not minutes.
"""

from __future__ import annotations

import http.server
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from panopticon.api import create_app
from panopticon.kafka import ensure_topics
from panopticon.model.times import now_ms
from panopticon.settings import Settings, to_environ
from panopticon.storage import ALERTS, SearchStore
from tests.integration.processes import ProcessGroup, Running, free_port
from tests.integration.rollup_data import span_message, store_spans
from tests.integration.test_error_stream import Client, start_stream, stream_settings, wait_until, ws_url
from tests.integration.traffic import produce

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 180.0


@dataclass
class Received:
    path: str
    body: dict[str, Any]


@dataclass
class HttpReceiver:
    """A real HTTP server that records every POST; `stop` closes its port (connection refused), `start` opens it
    again on the same port."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> HttpReceiver:
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the base class's name
                length = int(self.headers.get("Content-Length", 0))
                received.append(Received(self.path, orjson.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[dict[str, Any]]:
        return [r.body for r in list(self.received) if r.path == path]


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


def rules_file(tmp_path: Path, receiver: HttpReceiver, rules: str) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(f"""
receivers:
  - {{name: plain, url: "{receiver.url('/json')}", format: json}}
  - {{name: am, url: "{receiver.url('/alertmanager')}", format: alertmanager}}
rules:
{rules}
""")
    return str(path)


def alert_settings(namespace: Settings, rules: str, **changes: Any) -> Settings:
    return stream_settings(namespace, alert_rules_file=rules, alert_interval_seconds=2,
                           api_port=free_port(), **changes)


def history(settings: Settings) -> list[dict[str, Any]]:
    answer = create_app(settings).test_client().get("/query/alerts/history?start=1h&limit=500")
    assert answer.status_code == 200, answer.get_json()
    return list(reversed(answer.get_json()["items"]))


def start_alerting(processes: ProcessGroup, settings: Settings) -> tuple[Running, Running]:
    alerts = processes.start("alerts", settings)
    processes.start("rollup", settings)  # beat also sends the rollup runs
    beat = processes.start("beat", settings)
    processes.wait_for_log(alerts, " ready.", timeout=120)
    return alerts, beat


class Traffic:
    """Requests of one service produced to apm.spans as they happen, with a share of errors that can change."""

    def __init__(self, settings: Settings, service: str, rate: float = 20) -> None:
        self.settings, self.service, self.rate = settings, service, rate
        self.error_share = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _run(self) -> None:
        rng = random.Random(3)
        while not self.stop.is_set():
            batch = []
            for _ in range(int(self.rate)):
                self.sent += 1
                batch.append(("span", span_message(self.sent, service=self.service, environment="prod",
                                                   endpoint="POST /pay", start_ms=now_ms() - 50,
                                                   duration_ms=20.0, error=rng.random() < self.error_share)))
            produce(self.settings, batch)
            self.stop.wait(1.0)


def test_a_rule_fires_and_resolves_on_real_traffic_and_each_change_is_notified_once(
        namespace: Settings, store: SearchStore, processes, receiver: HttpReceiver, tmp_path: Path) -> None:
    service = f"{namespace.index_prefix}pay"
    rules = rules_file(tmp_path, receiver, f"""
  - name: pay-errors
    type: error_rate
    service: {service}
    threshold: 0.5
    min_requests: 5
    window: 20s
    for: 4s
    summary: "Payments fail"
""")
    settings = alert_settings(namespace, rules)
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic, settings.kafka_apm_dlq_topic])
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    _relay, ws = start_stream(processes, settings)
    live = Client(ws_url(settings, f"service={service}"))
    alerts, _beat = start_alerting(processes, settings)
    processes.wait_for_log(bridge, "assigned", timeout=120)

    traffic = Traffic(settings, service)
    traffic.error_share = 0.9
    traffic.thread.start()
    try:
        wait_until(lambda: len(receiver.at("/json")) >= 1 and len(receiver.at("/alertmanager")) >= 1,
                   "the firing notification in both formats", timeout=WAIT_S, running=alerts)
        traffic.error_share = 0.0
        wait_until(lambda: len(receiver.at("/json")) >= 2 and len(receiver.at("/alertmanager")) >= 2,
                   "the resolved notification in both formats", timeout=WAIT_S, running=alerts)
    finally:
        traffic.stop.set()
        traffic.thread.join(30)
    time.sleep(3 * settings.alert_interval_seconds)  # a repeat, if one could come, arrives in this time

    plain, am = receiver.at("/json"), receiver.at("/alertmanager")
    assert [n["state"] for n in plain] == ["firing", "resolved"], "one notification per change, no more"
    assert [n["status"] for n in am] == ["firing", "resolved"]
    assert len({n["id"] for n in plain}) == 2
    firing = plain[0]
    assert firing["rule"] == "pay-errors" and firing["value"] > 0.5 and firing["threshold"] == 0.5
    assert firing["summary"] == "Payments fail" and firing["previous"] == "pending"
    assert f"#/service/{service}?start=" in firing["links"]["service"]
    assert firing["links"]["traces"] and all("/#/trace/trace-" in t for t in firing["links"]["traces"])
    first = am[0]
    assert first["version"] == "4" and first["receiver"] == "am" and first["groupLabels"] == {"alertname": "pay-errors"}
    item = first["alerts"][0]
    assert item["labels"]["alertname"] == "pay-errors" and item["labels"]["service"] == service
    assert item["endsAt"] == "0001-01-01T00:00:00Z" and am[1]["alerts"][0]["endsAt"] != item["endsAt"]
    assert item["generatorURL"] == firing["links"]["service"]

    changes = history(settings)
    assert [c["state"] for c in changes] == ["pending", "firing", "resolved"]
    wait_until(lambda: len([e for e in live.events if e["event"] == "alert"]) >= 2, "the live stream's alert events",
               running=ws)
    events = [e for e in live.events if e["event"] == "alert"]
    assert [(e["id"], e["alert"]["state"]) for e in events] == [(n["id"], n["state"]) for n in plain]
    listed = create_app(settings).test_client().get("/query/alerts").get_json()
    assert listed["items"][0]["state"] == "resolved" and listed["items"][0]["changes"] == 3
    metrics = create_app(settings).test_client().get("/metrics").data.decode()
    assert 'panopticon_alert_rules{state="resolved"} 1.0' in metrics
    assert 'panopticon_alert_notifications{status="delivered"} 6.0' in metrics  # 2 changes x (2 hooks + stream)


def test_a_receiver_down_for_a_while_gets_every_notification_afterwards(
        namespace: Settings, store: SearchStore, processes, tmp_path: Path) -> None:
    """Compressed time: every retry wait is a tenth of its default (ALERT_RETRY_FIRST_SECONDS 1 instead of 10,
    ALERT_RETRY_MAX_SECONDS 12 instead of 120), and the receiver is down for 30 s instead of 5 minutes: the same
    sequence of attempts a 5-minute outage makes with the defaults."""
    receiver = HttpReceiver()  # down: nothing listens on its port yet
    service = f"{namespace.index_prefix}quiet"
    rules = rules_file(tmp_path, receiver, f"""
  - {{name: quiet-floor, type: request_rate, service: {service}, threshold: 30, window: 20s}}
""")
    settings = alert_settings(namespace, rules, alert_retry_first_seconds=1, alert_retry_max_seconds=12)
    down_since = time.monotonic()
    alerts, beat = start_alerting(processes, settings)
    try:
        # No requests at all: below the floor, firing at the first evaluation (for: 0s).
        wait_until(lambda: [c["state"] for c in history(settings)] == ["firing"], "firing", timeout=WAIT_S,
                   running=alerts)
        spans = [span_message(n, service=service, environment="prod", endpoint="GET /q", start_ms=now_ms() - 10_000
                              + n * 100, duration_ms=5.0) for n in range(100)]
        store_spans(store, spans, now_ms())
        wait_until(lambda: [c["state"] for c in history(settings)] == ["firing", "resolved"], "resolved",
                   timeout=WAIT_S, running=alerts)
        processes.kill(beat)  # no more evaluations: the two changes are all there is to deliver
        processes.wait_for_log(alerts, "not taken", timeout=WAIT_S)
        time.sleep(max(0.0, 30 - (time.monotonic() - down_since)))
        assert receiver.received == []
        receiver.start()
        wait_until(lambda: len(receiver.at("/json")) >= 2 and len(receiver.at("/alertmanager")) >= 2,
                   "every notification after the receiver came back", timeout=WAIT_S, running=alerts)
        time.sleep(15)  # longer than the longest retry wait: a repeat would have come
    finally:
        receiver.stop()
    assert sorted(n["state"] for n in receiver.at("/json")) == ["firing", "resolved"]
    assert sorted(n["status"] for n in receiver.at("/alertmanager")) == ["firing", "resolved"]
    deliveries = store.search(store.name(ALERTS), {"size": 100, "query": {"term": {"kind": "delivery"}}})
    records = [hit["_source"] for hit in deliveries["hits"]["hits"]]
    assert {r["status"] for r in records} == {"delivered"} and len(records) == 6
    assert all(r["attempts"] > 1 for r in records if r["target"] != "websocket"), "each was retried"


def test_a_bad_rules_file_stops_start_up_with_one_line(namespace: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - name: checkout-p95\n    type: latency\n    service: checkout\n    threshold: high\n")
    line = (f"panopticon: configuration error: ALERT_RULES_FILE={bad}: rules[0] (checkout-p95): threshold: expected "
            "a number, got 'high'")
    settings = namespace.replace(alert_rules_file=str(bad), api_port=free_port())
    env = {**to_environ(settings), "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin"}
    commands = {
        "alerts": [sys.executable, "-m", "celery", "-A", "panopticon", "worker", "-Q", settings.celery_alerts_queue],
        "beat": [sys.executable, "-m", "celery", "-A", "panopticon", "beat", "--schedule", str(tmp_path / "beat")],
        "web": [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{settings.api_port}", "--workers", "1",
                "wsgi:app"],
    }
    for name, command in commands.items():
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0, name
        if name == "web":  # gunicorn adds its own lines about the worker that did not boot; ours is said once
            assert done.stderr.count(line) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        else:
            assert done.stderr.strip().splitlines() == [line], (name, done.stderr[-2000:])
