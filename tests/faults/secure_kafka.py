"""A private Kafka broker with the listeners our security settings talk to: SASL_PLAINTEXT (PLAIN,
SCRAM-SHA-256/512, OAUTHBEARER), SSL and SASL_SSL, with a throwaway CA whose server certificate names
`localhost` only (so hostname verification has something to refuse).

It is the stack's own Kafka (the jars infra/stack.sh fetched), started with a config of its own; the
shared stack is never touched. OAUTHBEARER uses Kafka's unsecured-JWT validator, the only token
issuer that can run on this machine (see tests/faults/README.md for what MSK IAM needs beyond it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.faults.certs import make_ca, make_server_certificate

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "alice", "alice-s3cret-pw"
STORE_PASSWORD = "keystore-pw"
PORTS = {"internal": 19392, "controller": 19393, "sasl_plaintext": 19394, "ssl": 19395, "sasl_ssl": 19396}


def make_certificates(directory: Path) -> None:
    """A CA and a server certificate for DNS:localhost (no IP SAN), as PKCS12 for the broker."""
    make_ca(directory)
    make_server_certificate(directory)
    subprocess.run(["openssl", "pkcs12", "-export", "-in", "server.crt", "-inkey", "server.key", "-out", "server.p12",
                    "-password", f"pass:{STORE_PASSWORD}"], cwd=directory, check=True, capture_output=True,
                   timeout=120)


def _jaas(mechanism: str) -> str:
    if mechanism == "plain":
        return f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'
    if mechanism == "oauthbearer":
        return "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
    return "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def server_properties(directory: Path) -> str:
    p = PORTS
    lines = [
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{p['controller']}", "controller.listener.names=CONTROLLER",
        f"listeners=PLAINTEXT://127.0.0.1:{p['internal']},CONTROLLER://127.0.0.1:{p['controller']},"
        f"SASL_PLAINTEXT://127.0.0.1:{p['sasl_plaintext']},SSL://127.0.0.1:{p['ssl']},"
        f"SASL_SSL://127.0.0.1:{p['sasl_ssl']}",
        # TLS listeners advertise `localhost`, the name in the certificate.
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{p['internal']},"
        f"SASL_PLAINTEXT://127.0.0.1:{p['sasl_plaintext']},SSL://localhost:{p['ssl']},"
        f"SASL_SSL://localhost:{p['sasl_ssl']}",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
        "SSL:SSL,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
        "ssl.keystore.type=PKCS12", f"ssl.keystore.location={directory / 'server.p12'}",
        f"ssl.keystore.password={STORE_PASSWORD}", f"ssl.key.password={STORE_PASSWORD}",
        f"log.dirs={directory / 'data'}", "num.partitions=1", "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0",
    ]
    for listener in ("sasl_plaintext", "sasl_ssl"):
        for mechanism in ("plain", "scram-sha-256", "scram-sha-512", "oauthbearer"):
            lines.append(f"listener.name.{listener}.{mechanism}.sasl.jaas.config={_jaas(mechanism)}")
    return "\n".join(lines) + "\n"


class SecureKafka:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.ca_file = str(directory / "ca.pem")

    def _java(self, *args: str, heap: str = "256m") -> list[str]:
        return ["java", f"-Xmx{heap}", "-cp", str(ROOT / ".cache" / "kafka" / "lib" / "*"), *args]

    def start(self) -> None:
        if not (ROOT / ".cache" / "kafka" / "lib").is_dir():
            subprocess.run(["bash", str(ROOT / "infra" / "stack.sh"), "up", "kafka"], check=True, timeout=300)
        make_certificates(self.directory)
        config = self.directory / "server.properties"
        config.write_text(server_properties(self.directory))
        scram = [f"SCRAM-SHA-{bits}=[name={USER},password={PASSWORD}]" for bits in (256, 512)]
        subprocess.run(self._java("-XX:TieredStopAtLevel=1", "kafka.tools.StorageTool", "format", "-t",
                                  "cGFub3B0aWNvbnNlY3VyZQ", "-c", str(config),
                                  *[a for s in scram for a in ("--add-scram", s)]),
                       check=True, capture_output=True, timeout=120)
        log = (self.directory / "kafka.log").open("wb")
        self.process = subprocess.Popen(self._java("-Dpanopticon.stack=secure-kafka", "kafka.Kafka", str(config),
                                                   heap="512m"),
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process and self.process.poll() is None, self.log_tail()
            try:
                socket.create_connection(("127.0.0.1", PORTS["sasl_ssl"]), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"secure kafka not listening after {timeout}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.directory / "kafka.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
