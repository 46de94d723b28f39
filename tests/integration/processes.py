"""Run the project's processes as the Procfile does, with a test's settings, and kill them at will."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from panopticon.settings import Settings, to_environ


@dataclass
class Running:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None


class ProcessGroup:
    def __init__(self, root: Path, logs: Path) -> None:
        self.root = root
        self.logs = logs
        self.running: list[Running] = []

    def start(self, name: str, settings: Settings, *, extra_env: dict[str, str] | None = None) -> Running:
        commands = {
            "bridge": [sys.executable, "-m", "panopticon.ingest"],
            # As the Procfile's `worker` (the ingest queue) and `rollup` (the scheduled work's queue).
            "worker": [sys.executable, "-m", "celery", "-A", "panopticon", "worker", "--loglevel", "INFO",
                       "--concurrency", "2", "--without-mingle", "--without-gossip", "-Q", settings.celery_queue,
                       "-n", f"{settings.celery_queue}-{len(self.running)}@%h"],
            "rollup": [sys.executable, "-m", "celery", "-A", "panopticon", "worker", "--loglevel", "INFO",
                       "--concurrency", "1", "--without-mingle", "--without-gossip", "-Q",
                       settings.celery_rollup_queue, "-n", f"{settings.celery_rollup_queue}-{len(self.running)}@%h"],
            # As the Procfile's `alerts` (evaluation and notifications, on CELERY_ALERTS_QUEUE).
            "alerts": [sys.executable, "-m", "celery", "-A", "panopticon", "worker", "--loglevel", "INFO",
                       "--concurrency", "2", "--without-mingle", "--without-gossip", "-Q",
                       settings.celery_alerts_queue, "-n", f"{settings.celery_alerts_queue}-{len(self.running)}@%h"],
            "beat": [sys.executable, "-m", "celery", "-A", "panopticon", "beat", "--loglevel", "INFO",
                     "--schedule", str(self.logs / f"beat-{len(self.running)}")],
            "relay": [sys.executable, "-m", "panopticon.errorstream"],
            # As the Procfile's `web` and `ws`, on the test's API_PORT / WS_PORT (`ws` reads it from its settings).
            "web": [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{settings.api_port}",
                    "--worker-class", "gthread", "--workers", "1", "--threads", "16", "wsgi:app"],
            "ws": [sys.executable, "-m", "gunicorn", "--config", "python:panopticon.errorstream.gunicorn",
                   "wsgi:ws_app"],
            # As the Procfile's `otlp`, on the test's OTLP_HTTP_PORT.
            "otlp": [sys.executable, "-m", "gunicorn", "--config", "python:panopticon.otlp.gunicorn",
                     "wsgi:otlp_app"],
        }
        env = {**os.environ, **to_environ(settings), **(extra_env or {})}
        log_path = self.logs / f"{name}-{len(self.running)}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(commands[name], cwd=self.root, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        running = Running(name, process, log_path)
        self.running.append(running)
        return running

    def kill(self, running: Running, sig: int = signal.SIGKILL) -> None:
        """Signal the process only (not its children), as `kill -9 <pid>` would."""
        running.process.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                running.process.wait(60)
            except subprocess.TimeoutExpired:
                running.process.kill()

    def children(self, running: Running) -> list[psutil.Process]:
        return psutil.Process(running.process.pid).children(recursive=True)

    def wait_for_log(self, running: Running, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in running.log_path.read_text(errors="replace"):
                return
            if not running.alive():
                raise AssertionError(f"{running.name} exited ({running.process.returncode}):\n{running.log_tail()}")
            time.sleep(0.2)
        raise AssertionError(f"{running.name} did not log {text!r} in {timeout}s:\n{running.log_tail()}")

    def stop_all(self) -> None:
        for running in self.running:
            if running.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, signal.SIGKILL)
                running.process.wait(30)
        # Celery children may outlive a SIGKILLed parent; they are in the same session/group.
        for running in self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.process.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    settings: Settings
    url: str
    process: Running

    def rss(self) -> int:
        """Resident memory of the receiver (gunicorn's arbiter and its worker)."""
        root = psutil.Process(self.process.process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def start_receiver(processes: ProcessGroup, settings: Settings) -> Receiver:
    process = processes.start("otlp", settings)
    url = f"http://127.0.0.1:{settings.otlp_http_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Receiver(settings, url, process)
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or too busy starting to answer in 2 s
            pass
        assert process.alive(), process.log_tail()
        assert time.monotonic() < deadline, f"otlp did not answer in 60 s:\n{process.log_tail()}"
        time.sleep(0.3)
