"""Throwaway certificate authorities for the security tests (openssl, as Debian ships it)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=120)


def make_ca(directory: Path, name: str = "ca") -> Path:
    """A self-signed CA: `<name>.pem` and `<name>.key` in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
         "-days", "2", "-subj", f"/CN=panopticon-test-{name}", cwd=directory)
    return directory / f"{name}.pem"


def make_server_certificate(directory: Path, ca: str = "ca", name: str = "server") -> tuple[Path, Path]:
    """`<name>.crt` / `<name>.key` for DNS:localhost only (no IP SAN, so hostname checks have something to
    refuse), signed by the CA `<ca>.pem` in `directory`."""
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", "/CN=localhost", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext", cwd=directory)
    return directory / f"{name}.crt", directory / f"{name}.key"
