"""Browser-test fixtures: the real processes with sample traffic once per module, and a Chromium page per test.

`dashboard` starts web, ws, relay, worker and bridge as real subprocesses (the Procfile's commands, via
`ProcessGroup`) in one namespace of their own (`own_namespace`, the body of the integration `namespace`
fixture), produces seeded sample traffic to Kafka and waits until every message is stored; a second
web + ws pair on the same data has API_AUTH_TOKENS set. The traffic is fixed after that, so a page and
the API asked for the same absolute range must show the same numbers.

A missing Chromium fails the run (it never skips).
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page

from panopticon import sample
from panopticon.kafka import ensure_topics
from panopticon.settings import Settings
from panopticon.storage import open_store
from tests.browser import chromium
from tests.integration.conftest import ROOT, own_namespace, stack  # noqa: F401  # `stack` is a fixture used here
from tests.integration.processes import ProcessGroup, Running
from tests.integration.traffic import wait_for_count

SCREENSHOTS = ROOT / "docs" / "screenshots"
TOKEN = "dashboard-test-token"
MINUTE = 60_000
WAIT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dashboard:
    settings: Settings
    url: str  # the dashboard without auth
    auth_url: str  # the same data, with API_AUTH_TOKENS=TOKEN
    start_ms: int  # an absolute range holding all of the sample traffic
    end_ms: int
    messages: list[sample.SampleMessage]
    processes: ProcessGroup
    running: dict[str, Running] = field(default_factory=dict)

    @property
    def range_query(self) -> str:
        return f"start={self.start_ms}&end={self.end_ms}"

    def api(self, path: str, token: str | None = None, **params: Any) -> dict[str, Any]:
        """GET an API path of the unauthenticated web, as the page does."""
        base = self.auth_url if token else self.url
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
        request = urllib.request.Request(f"{base}{path}{'?' + query if query else ''}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=60) as answer:
            return orjson.loads(answer.read())


def _wait_http(url: str, running: Running) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not running.alive():
            raise AssertionError(f"{running.name} exited:\n{running.log_tail()}")
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {WAIT_S}s:\n{running.log_tail()}")


def _ws_subscribed(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as answer:
            return bool(orjson.loads(answer.read()).get("subscribed"))
    except (urllib.error.URLError, OSError):
        return False


def start_ws(processes: ProcessGroup, settings: Settings) -> Running:
    ws = processes.start("ws", settings)
    deadline = time.monotonic() + WAIT_S
    while not _ws_subscribed(settings.ws_port):
        assert ws.alive(), ws.log_tail()
        assert time.monotonic() < deadline, f"ws not subscribed in {WAIT_S}s:\n{ws.log_tail()}"
        time.sleep(0.2)
    return ws


@pytest.fixture(scope="module")
def dashboard(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:  # noqa: F811
    with contextmanager(own_namespace)(stack) as settings:
        ns = settings.index_prefix.rstrip("-")
        settings = settings.replace(api_port=free_port(), ws_port=free_port(), error_relay_group=f"{ns}-relay",
                                    relay_metrics_port=0)
        secured = settings.replace(api_port=free_port(), ws_port=free_port(), api_auth_tokens=(TOKEN,))
        ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                                 settings.kafka_apm_log_error_topic, settings.kafka_apm_dlq_topic])
        store = open_store(settings, setup=True)
        processes = ProcessGroup(ROOT, tmp_path_factory.mktemp("dashboard-processes"))
        try:
            running = {"worker": processes.start("worker", settings), "bridge": processes.start("bridge", settings),
                       "relay": processes.start("relay", settings)}
            running["web"] = processes.start("web", settings)
            running["web-auth"] = processes.start("web", secured)
            running["ws"] = start_ws(processes, settings)
            running["ws-auth"] = start_ws(processes, secured)
            for name, port in (("web", settings.api_port), ("web-auth", secured.api_port)):
                _wait_http(f"http://127.0.0.1:{port}/healthz", running[name])
            processes.wait_for_log(running["relay"], "relay assigned", timeout=WAIT_S)
            now = int(time.time() * 1000)
            messages = list(sample.generate(400, seed=18, start_ms=now - 20 * MINUTE, spread_ms=18 * MINUTE))
            sample.send(settings, iter(messages))
            stored = wait_for_count(store, len(messages), timeout=180)
            assert stored == len(messages), f"{stored} of {len(messages)} stored\n{running['bridge'].log_tail()}"
            yield Dashboard(settings, f"http://127.0.0.1:{settings.api_port}",
                            f"http://127.0.0.1:{secured.api_port}", (now - 30 * MINUTE) // MINUTE * MINUTE,
                            (now // MINUTE + 1) * MINUTE, messages, processes, running)
        finally:
            processes.stop_all()
            store.close()


@dataclass
class Console:
    """What the page said in its console, and the requests it made."""

    errors: list[str] = field(default_factory=list)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (url, Authorization header)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserContext]:
    problem = chromium.missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    with chromium.browser_context() as context:
        yield context


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: BrowserContext, console: Console) -> Iterator[Page]:
    """A new tab (so a new sessionStorage) that records console errors and uncaught exceptions."""
    tab = browser.new_page()
    tab.on("console", console.on_console)
    tab.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    tab.on("request", lambda r: console.requests.append((r.url, r.headers.get("authorization"))))
    yield tab
    tab.close()


def screenshot(page: Page, name: str, full_page: bool = False) -> Path:
    """Save what the page shows now as docs/screenshots/<name>.png (shown in the README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
