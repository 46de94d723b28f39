"""A private redis-server that speaks TLS only and demands a password, with its own CA (the shape of a
managed Redis such as ElastiCache with in-transit encryption and AUTH). The shared Redis is never touched."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.faults.certs import make_ca, make_server_certificate
from tests.faults.secure_engine import free_port

PASSWORD = "redis-Tls-s3cret"


class SecureRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.ca_file = str(directory / "ca.pem")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:  # infra/stack.sh installs it with the stack
            raise AssertionError("redis-server is not installed (bash infra/stack.sh up installs it)")
        d = self.directory
        make_ca(d)
        cert, key = make_server_certificate(d)
        log = (d / "redis.log").open("wb")
        self.process = subprocess.Popen(
            [server, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1", "--tls-cert-file", str(cert),
             "--tls-key-file", str(key), "--tls-ca-cert-file", self.ca_file, "--tls-auth-clients", "no",
             "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(d)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server (TLS) exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"redis-server (TLS) did not listen in 30 s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
