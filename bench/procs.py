"""Start the project's processes as the Procfile does (with a measurement's settings), and count their CPU.

Every process is started in its own session, so stopping one stops its children (Celery's pool) and
nothing else. CPU is read with psutil from the process trees we started and from the stack's services
(found by their listening ports); the stack is shared, so its figures include whatever else ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.env import ROOT, stack_pids
from panopticon.settings import Settings, to_environ


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None


def commands(settings: Settings, concurrency: int, tag: str) -> dict[str, list[str]]:
    """The Procfile's lines, with the worker's pool size and a unique node name."""
    return {
        "bridge": [sys.executable, "-m", "panopticon.ingest"],
        "worker": [sys.executable, "-m", "celery", "-A", "panopticon", "worker", "--loglevel", "INFO",
                   "--concurrency", str(concurrency), "--without-mingle", "--without-gossip",
                   "-n", f"{settings.celery_queue}-{tag}@%h"],
        "relay": [sys.executable, "-m", "panopticon.errorstream"],
        "otlp": [sys.executable, "-m", "gunicorn", "--config", "python:panopticon.otlp.gunicorn", "wsgi:otlp_app"],
    }


@dataclass
class Launcher:
    logs: Path
    running: list[Proc] = field(default_factory=list)

    def start(self, name: str, settings: Settings, *, concurrency: int = 2, argv: list[str] | None = None,
              extra_env: dict[str, str] | None = None) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        tag = str(len(self.running))
        argv = argv or commands(settings, concurrency, tag)[name]
        env = {**os.environ, **to_environ(settings), **(extra_env or {})}
        log_path = self.logs / f"{settings.index_prefix}{name}-{tag}.log"
        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        proc = Proc(name, popen, log_path)
        self.running.append(proc)
        return proc

    def wait_for_log(self, proc: Proc, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in proc.log_text():
                return
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{proc.name} did not log {text!r} in {timeout:g}s:\n{proc.tail()}")

    def stop(self, proc: Proc) -> None:
        """SIGTERM the process group, then SIGKILL what is left of it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(15)

    def stop_all(self) -> None:
        for proc in reversed(self.running):
            self.stop(proc)
        self.running.clear()


# --- CPU accounting -----------------------------------------------------------------------------------
def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live children, plus children it reaped.

    The bench process itself counts alone: its children are the processes measured under their names.
    """
    try:
        root = psutil.Process(pid)
        members = [root] if pid == os.getpid() else [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in members:
        with contextlib.suppress(psutil.Error):
            t = member.cpu_times()
            total += t.user + t.system
            if member is root and pid != os.getpid():
                total += t.children_user + t.children_system
    return total


class CpuMeter:
    """CPU seconds used by named process trees between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.seconds: dict[str, float] = {}
        self.wall_seconds = 0.0
        self._system = psutil.cpu_times()
        self.machine_busy = 0.0

    @classmethod
    def for_pipeline(cls, procs: dict[str, Proc]) -> CpuMeter:
        pids = {name: proc.popen.pid for name, proc in procs.items()}
        pids.update(stack_pids())
        pids["bench"] = os.getpid()
        return cls(pids)

    def start(self) -> None:
        self._start = {name: _tree_cpu(pid) for name, pid in self.pids.items()}
        self._system = psutil.cpu_times()
        self._wall = time.monotonic()

    def stop(self) -> None:
        self.wall_seconds = time.monotonic() - self._wall
        self.seconds = {name: max(0.0, _tree_cpu(pid) - self._start.get(name, 0.0))
                        for name, pid in self.pids.items()}
        self.machine_busy = _busy_share(self._system, psutil.cpu_times())

    def per_thousand(self, events: int) -> dict[str, float]:
        return {name: round(seconds * 1000 / max(events, 1), 4) for name, seconds in self.seconds.items()}


def _busy_share(before, after) -> float:
    """Share of the whole machine's CPU that was busy between two samples (ours or anyone's)."""
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return round(1 - idle / total, 3) if total > 0 else 0.0
