"""A private, throwaway stack for faults that hit a service itself (kill Redis, restart Kafka, freeze
OpenSearch): the shared stack serves every other engineer's tests and must never be touched.

The same `infra/stack.sh` starts it, with its own STACK_DIR and ports, so it is the very software the
shared stack runs. Services start on first use (CPU is scarce) and all stop at the end of the session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from panopticon.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PORTS = {"kafka": 19092, "kafka_controller": 19093, "opensearch": 9250, "redis": 16379}


class PrivateStack:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: set[str] = set()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "STACK_DIR": str(self.directory), "KAFKA_PORT": str(PORTS["kafka"]),
                "KAFKA_CONTROLLER_PORT": str(PORTS["kafka_controller"]),
                "OPENSEARCH_PORT": str(PORTS["opensearch"]), "REDIS_PORT": str(PORTS["redis"]),
                "OPENSEARCH_HEAP": "512m"}

    def _stack(self, command: str, service: str) -> None:
        done = subprocess.run(["bash", str(ROOT / "infra" / "stack.sh"), command, service], env=self._env(),
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"stack.sh {command} {service} failed:\n{done.stdout}\n{done.stderr}")

    def up(self, service: str) -> None:
        """Start `service` (or wait for it); a failure fails the test, never skips it."""
        self._stack("up", service)
        self.started.add(service)

    def restart(self, service: str) -> None:
        self._stack("restart", service)

    def pid(self, service: str) -> int:
        return int((self.directory / service / f"{service}.pid").read_text().strip())

    def signal(self, service: str, sig: int) -> None:
        os.kill(self.pid(service), sig)

    def kill(self, service: str) -> None:
        """kill -9, then wait until the process is really gone."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            time.sleep(0.05)

    def settings(self, base: Settings, *services: str) -> Settings:
        """`base` pointed at this stack's copies of `services`."""
        changes: dict = {}
        if "kafka" in services:
            changes["kafka_brokers"] = f"{HOST}:{PORTS['kafka']}"
        if "opensearch" in services:
            changes["elasticsearch_node"] = f"http://{HOST}:{PORTS['opensearch']}"
        if "redis" in services:
            changes.update(redis_host=HOST, redis_port=PORTS["redis"], celery_broker_url="",
                           celery_result_backend="")
        return base.replace(**changes)

    def down(self) -> None:
        for service in self.started:
            subprocess.run(["bash", str(ROOT / "infra" / "stack.sh"), "down", service], env=self._env(),
                           capture_output=True, timeout=120, check=False)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (FileNotFoundError, IndexError):
        return "zombie"
