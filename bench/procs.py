"""Start the project's processes as the Procfile does (with a measurement's settings); count their CPU and memory.

Every process is started in its own session, so stopping one stops its children (Celery's pool) and
nothing else. CPU is read with psutil from the process trees we started and from the stack's services
(found by their listening ports); the stack is shared, so its figures include whatever else ran.
Memory is the resident set size (RSS) of the same trees, sampled every RSS_INTERVAL_S while a meter runs:
its peak for the whole tree (the sum counts pages shared by Celery's forked pool once per process, so it
is an upper bound) and for the largest single process of it.

A process may be started from another checkout of the project (`cwd`): it then imports that checkout's
`panopticon` (its directory comes first on PYTHONPATH) with the same virtualenv, for before/after runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
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
        "ws": [sys.executable, "-m", "gunicorn", "--config", "python:panopticon.errorstream.gunicorn", "wsgi:ws_app"],
    }


@dataclass
class Launcher:
    logs: Path
    running: list[Proc] = field(default_factory=list)

    def start(self, name: str, settings: Settings, *, concurrency: int = 2, argv: list[str] | None = None,
              extra_env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
        """`cwd`: a checkout of the project to run instead of the working tree (see the module docstring)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        tag = str(len(self.running))
        argv = argv or commands(settings, concurrency, tag)[name]
        env = {**os.environ, **to_environ(settings), **checkout_env(cwd), **(extra_env or {})}
        log_path = self.logs / f"{settings.index_prefix}{name}-{tag}.log"
        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(argv, cwd=cwd or ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
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


def checkout_env(cwd: Path | None) -> dict[str, str]:
    """PYTHONPATH that makes a process import `panopticon` from the checkout `cwd` (nothing for the working tree)."""
    if cwd is None:
        return {}
    return {"PYTHONPATH": os.pathsep.join([str(cwd), *filter(None, [os.environ.get("PYTHONPATH")])])}


# --- CPU and memory accounting ------------------------------------------------------------------------
RSS_INTERVAL_S = 0.2


def _members(pid: int) -> list[psutil.Process]:
    """A process and its live children; the bench process alone (its children are measured by name)."""
    try:
        root = psutil.Process(pid)
        return [root] if pid == os.getpid() else [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_rss(pid: int) -> tuple[int, int]:
    """(sum, largest single) RSS in bytes of a process tree, now."""
    sizes = []
    for member in _members(pid):
        with contextlib.suppress(psutil.Error):
            sizes.append(member.memory_info().rss)
    return sum(sizes), max(sizes, default=0)


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live children, plus children it reaped.

    The bench process itself counts alone: its children are the processes measured under their names.
    """
    members = _members(pid)
    if not members:
        return 0.0
    root = members[0]
    total = 0.0
    for member in members:
        with contextlib.suppress(psutil.Error):
            t = member.cpu_times()
            total += t.user + t.system
            if member is root and pid != os.getpid():
                total += t.children_user + t.children_system
    return total


class CpuMeter:
    """CPU seconds used by named process trees between `start()` and `stop()`, and their peak memory.

    A sampler thread reads every tree's RSS each RSS_INTERVAL_S (and once at start and stop); `series`
    names the trees whose every sample is kept, as (seconds since start, RSS bytes of the tree).
    """

    def __init__(self, pids: dict[str, int], *, series: tuple[str, ...] = ()) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.seconds: dict[str, float] = {}
        self.wall_seconds = 0.0
        self._system = psutil.cpu_times()
        self.machine_busy = 0.0
        self.rss_peak: dict[str, tuple[int, int]] = {}  # name -> (peak tree sum, peak largest process), bytes
        self.series: dict[str, list[tuple[float, int]]] = {name: [] for name in series}
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    @classmethod
    def for_pipeline(cls, procs: dict[str, Proc], *, series: tuple[str, ...] = ()) -> CpuMeter:
        pids = {name: proc.popen.pid for name, proc in procs.items()}
        pids.update(stack_pids())
        pids["bench"] = os.getpid()
        return cls(pids, series=series)

    def start(self) -> None:
        self._start = {name: _tree_cpu(pid) for name, pid in self.pids.items()}
        self._system = psutil.cpu_times()
        self._wall = time.monotonic()
        self._sample()
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample_loop, name="rss-sampler", daemon=True)
        self._sampler.start()

    def stop(self) -> None:
        self.wall_seconds = time.monotonic() - self._wall
        self.seconds = {name: max(0.0, _tree_cpu(pid) - self._start.get(name, 0.0))
                        for name, pid in self.pids.items()}
        self.machine_busy = _busy_share(self._system, psutil.cpu_times())
        self._sampling.clear()
        if self._sampler is not None:
            self._sampler.join(5)
        self._sample()

    def _sample_loop(self) -> None:
        while self._sampling.is_set():
            time.sleep(RSS_INTERVAL_S)
            self._sample()

    def _sample(self) -> None:
        at = time.monotonic() - self._wall
        for name, pid in self.pids.items():
            total, largest = _tree_rss(pid)
            peak_total, peak_largest = self.rss_peak.get(name, (0, 0))
            self.rss_peak[name] = (max(peak_total, total), max(peak_largest, largest))
            if name in self.series and total:
                self.series[name].append((round(at, 2), total))

    def per_thousand(self, events: int) -> dict[str, float]:
        return {name: round(seconds * 1000 / max(events, 1), 4) for name, seconds in self.seconds.items()}

    def peak_rss_mb(self) -> dict[str, dict[str, float]]:
        """Per name: the tree's peak RSS (MiB), and the peak of its largest single process."""
        return {name: {"sum": _mib(total), "max_single": _mib(largest)}
                for name, (total, largest) in self.rss_peak.items()}


def _mib(size: int) -> float:
    return round(size / 2**20, 1)


def merge_peaks(*peaks: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The highest peak per process name over several meters' `peak_rss_mb()`."""
    out: dict[str, dict[str, float]] = {}
    for peak in peaks:
        for name, values in peak.items():
            mine = out.setdefault(name, {"sum": 0.0, "max_single": 0.0})
            for key in ("sum", "max_single"):
                mine[key] = max(mine[key], values.get(key, 0.0))
    return out


def _busy_share(before, after) -> float:
    """Share of the whole machine's CPU that was busy between two samples (ours or anyone's)."""
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return round(1 - idle / total, 3) if total > 0 else 0.0
