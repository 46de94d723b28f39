"""The local OpenSearch behind a TLS-terminating, basic-auth reverse proxy: Debian's nginx, with its own CA.

The proxy demands what a managed engine demands (HTTPS with a certificate from a private CA that
names `localhost` only, and a user and password), then forwards to the shared stack's OpenSearch, so
the whole storage door can be exercised through it. nginx is installed with apt-get when missing, as
infra/stack.sh does for redis-server; a proxy that cannot start fails the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.faults.certs import make_ca, make_server_certificate

USER, PASSWORD = "panopticon", "engine-Pr0xy-s3cret"
NGINX = "/usr/sbin/nginx"


def ensure_nginx() -> str:
    """The nginx binary, installed from Debian's packages on a fresh machine."""
    found = shutil.which("nginx") or (NGINX if Path(NGINX).exists() else None)
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "nginx"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"could not install nginx with apt-get:\n{done.stderr[-2000:]}")
    found = shutil.which("nginx") or (NGINX if Path(NGINX).exists() else None)
    if not found:
        raise AssertionError("nginx was installed but is not on PATH")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SecureEngine:
    """nginx on 127.0.0.1:<port> (https, basic auth) -> `upstream` (the stack's OpenSearch)."""

    def __init__(self, directory: Path, upstream: str) -> None:
        self.directory = directory
        self.upstream = upstream.split(",")[0].rstrip("/")
        self.port = free_port()
        self.ca_file = str(directory / "ca.pem")
        self.other_ca_file = str(directory / "other-ca.pem")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def _config(self) -> str:
        d = self.directory
        temp = " ".join(f"{name}_temp_path {d / 'tmp' / name};" for name in
                        ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        upstream = urlsplit(self.upstream)
        user = "user root;" if os.geteuid() == 0 else ""  # workers read the password file at request time
        return f"""
{user}
worker_processes 1;
daemon off;
pid {d / 'nginx.pid'};
error_log {d / 'error.log'} warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    {temp}
    client_max_body_size 100m;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {d / 'server.crt'};
        ssl_certificate_key {d / 'server.key'};
        location / {{
            auth_basic "search engine";
            auth_basic_user_file {d / 'htpasswd'};
            proxy_pass http://{upstream.hostname}:{upstream.port or 9200};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_read_timeout 120s;
        }}
    }}
}}
"""

    def start(self) -> None:
        nginx = ensure_nginx()
        d = self.directory
        make_ca(d)
        make_server_certificate(d)
        make_ca(d, "other-ca")  # a CA that did not sign the proxy's certificate
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / "tmp" / name).mkdir(parents=True, exist_ok=True)
        hashed = subprocess.run(["openssl", "passwd", "-apr1", PASSWORD], capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
        (d / "htpasswd").write_text(f"{USER}:{hashed}\n")
        (d / "nginx.conf").write_text(self._config())
        log = (d / "nginx.out").open("wb")
        self.process = subprocess.Popen([nginx, "-c", str(d / "nginx.conf"), "-p", str(d)], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"nginx did not listen on {self.port} in 30 s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        parts = [p.read_text(errors="replace")[-2000:] for p in (self.directory / "nginx.out",
                                                                   self.directory / "error.log") if p.exists()]
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
