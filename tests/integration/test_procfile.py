"""Every Procfile line starts, as written, and answers its health check."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from panopticon.settings import Settings, to_environ

ROOT = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, contains: str = "") -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return answer.status == 200 and contains in answer.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def log_has(path: Path, text: str) -> bool:
    return text in path.read_text(errors="replace")


def checks(settings: Settings, log: Path) -> dict[str, object]:
    """Process name -> a function that says whether it is healthy."""
    return {
        "web": lambda: http_ok(f"http://127.0.0.1:{settings.api_port}/healthz"),
        "ws": lambda: http_ok(f"http://127.0.0.1:{settings.ws_port}/healthz"),
        "otlp": lambda: http_ok(f"http://127.0.0.1:{settings.otlp_http_port}/healthz"),
        "bridge": lambda: http_ok(f"http://127.0.0.1:{settings.bridge_metrics_port}/metrics",
                                  "panopticon_batches_in_flight"),
        "relay": lambda: log_has(log, "relay"),
        "worker": lambda: log_has(log, " ready."),
        "rollup": lambda: log_has(log, " ready."),
        "alerts": lambda: log_has(log, " ready."),
        "beat": lambda: log_has(log, "beat: Starting"),
        "flower": lambda: http_ok(f"http://127.0.0.1:{settings.flower_port}/healthcheck"),
    }


def test_procfile_names_the_expected_processes() -> None:
    assert {"web", "ws", "bridge", "worker", "rollup", "alerts", "beat", "flower", "otlp"} <= set(procfile())


@pytest.mark.parametrize("name", sorted(procfile()))
def test_process_starts_and_answers(name: str, namespace: Settings, tmp_path: Path) -> None:
    settings = namespace.replace(api_port=free_port(), ws_port=free_port(), flower_port=free_port(),
                                 bridge_metrics_port=free_port(), otlp_http_port=free_port())
    log = tmp_path / f"{name}.log"
    env = {**os.environ, **to_environ(settings), "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    check = checks(settings, log)[name]
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", "-c", f"exec {procfile()[name]}"], cwd=tmp_path if name == "beat"
                                   else ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not check():
            assert process.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{name} not healthy in 90 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
