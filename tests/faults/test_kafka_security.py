"""Kafka security settings against a real broker (tests/faults/secure_kafka.py): SASL PLAIN and SCRAM,
TLS with a CA file and hostname verification, SASL over TLS, MSK IAM's OAUTHBEARER wiring, and the
whole pipeline over SASL_SSL with its secrets kept out of every log."""

from __future__ import annotations

import base64
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from panopticon.kafka import common_config, ensure_topics
from panopticon.settings import Settings
from panopticon.storage import SearchStore
from tests.faults.harness import ensure_pipeline_topics
from tests.faults.secure_kafka import PASSWORD, PORTS, USER, SecureKafka
from tests.integration.processes import ProcessGroup
from tests.integration.traffic import check_exact, make_messages, produce, read_topic, wait_for_count

ENGINE_PASSWORD = "engine-s3cret-pw"


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    broker = SecureKafka(tmp_path_factory.mktemp("secure-kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def _sasl(mechanism: str, port: str = "sasl_plaintext", password: str = PASSWORD) -> dict:
    host = "localhost" if port == "sasl_ssl" else "127.0.0.1"
    # SASL over a plaintext listener is refused at start unless allowed explicitly (checked in tests/unit).
    return {"kafka_brokers": f"{host}:{PORTS[port]}", "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": USER, "kafka_sasl_password": password,
            "kafka_allow_plaintext_sasl": port == "sasl_plaintext"}


def _tls(broker: SecureKafka, host: str = "localhost", port: str = "ssl") -> dict:
    return {"kafka_brokers": f"{host}:{PORTS[port]}", "kafka_ssl": True, "kafka_ssl_ca_file": broker.ca_file}


def _round_trip(settings: Settings) -> None:
    """Create the topics, produce ten messages and read them back through the project's own config."""
    ensure_pipeline_topics(settings)
    values = [orjson.dumps({"n": i}) for i in range(10)]
    produce(settings, [("log", v) for v in values])
    got = [m.value() for m in read_topic(settings, settings.kafka_apm_log_topic)]
    assert sorted(got) == sorted(values)


def _refused(settings: Settings) -> str:
    """The client cannot talk to the broker; returns the error text."""
    admin = AdminClient({**common_config(settings), "socket.timeout.ms": 5000})
    with pytest.raises(KafkaException) as caught:
        admin.list_topics(timeout=8)
    return str(caught.value)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext(secure_kafka: SecureKafka, namespace: Settings, mechanism: str) -> None:
    _round_trip(namespace.replace(**_sasl(mechanism)))
    error = _refused(namespace.replace(**_sasl(mechanism, password="wrong-password")))
    assert "wrong-password" not in error and PASSWORD not in error


def test_tls_with_ca_file_and_hostname_verification(secure_kafka: SecureKafka, namespace: Settings) -> None:
    _round_trip(namespace.replace(**_tls(secure_kafka)))
    # The certificate names `localhost` only: by IP address, verification must refuse it.
    _refused(namespace.replace(**_tls(secure_kafka, host="127.0.0.1")))
    # Without our CA the broker's certificate is not trusted.
    _refused(namespace.replace(**{**_tls(secure_kafka), "kafka_ssl_ca_file": None}))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_sasl_over_tls(secure_kafka: SecureKafka, namespace: Settings, mechanism: str) -> None:
    _round_trip(namespace.replace(**{**_tls(secure_kafka, port="sasl_ssl"), **_sasl(mechanism, "sasl_ssl")}))


def _unsecured_jwt(subject: str) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    now = int(time.time())
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': now, 'exp': now + 3600})}."


def test_msk_iam_region_uses_oauthbearer_over_tls(secure_kafka: SecureKafka, namespace: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """KAFKA_AWS_REGION switches to OAUTHBEARER with tokens from the MSK signer, over TLS even when
    KAFKA_SSL is not set. AWS cannot be reached here, so the signer module is replaced by one that
    issues the unsecured JWT this broker accepts; everything from the callback on is real."""
    calls: list[str] = []

    def generate_auth_token(region: str) -> tuple[str, int]:
        calls.append(region)
        return _unsecured_jwt(USER), int(time.time() * 1000) + 3_600_000

    signer = types.ModuleType("aws_msk_iam_sasl_signer")
    signer.MSKAuthTokenProvider = types.SimpleNamespace(generate_auth_token=generate_auth_token)
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", signer)
    settings = namespace.replace(kafka_brokers=f"localhost:{PORTS['sasl_ssl']}", kafka_ssl=False,
                                 kafka_ssl_ca_file=secure_kafka.ca_file, kafka_aws_region="eu-west-1")
    config = common_config(settings)
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    admin = AdminClient(config)
    admin.poll(5)  # serves the token callback before the first request
    admin.list_topics(timeout=20)
    _round_trip(settings)
    assert calls and set(calls) == {"eu-west-1"}


def test_pipeline_over_sasl_ssl_keeps_secrets_out_of_logs(secure_kafka: SecureKafka, namespace: Settings,
                                                          store: SearchStore, processes: ProcessGroup) -> None:
    settings = namespace.replace(**{**_tls(secure_kafka, port="sasl_ssl"), **_sasl("SCRAM-SHA-256", "sasl_ssl")},
                                 opensearch_username="panopticon", opensearch_password=ENGINE_PASSWORD)
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                             settings.kafka_apm_log_error_topic, settings.kafka_apm_dlq_topic])
    messages, produced = make_messages(settings.index_prefix, 2_000, bad_ratio=0.01)
    produce(settings, messages)
    processes.start("worker", settings)
    processes.start("bridge", settings)
    assert wait_for_count(store, produced.valid, timeout=180) == produced.valid
    result = check_exact(store, produced)
    assert (result["lost"], result["duplicated"], result["unexpected"]) == (0, 0, 0), result
    assert len(read_topic(settings, settings.kafka_apm_dlq_topic)) == produced.bad

    # A bridge with a wrong password fails loudly, and says so without printing either password.
    wrong = settings.replace(kafka_sasl_password="wrong-s3cret-pw", kafka_consumer_group="other")
    failing = processes.start("bridge", wrong)
    time.sleep(15)
    logs = {r.name + str(i): r.log_path.read_text(errors="replace") for i, r in enumerate(processes.running)}
    assert "uthentication" in logs[f"bridge{len(processes.running) - 1}"], failing.log_tail()
    for name, text in logs.items():
        for secret in (PASSWORD, ENGINE_PASSWORD, "wrong-s3cret-pw"):
            assert secret not in text, f"{secret!r} printed in the {name} log"
    assert all(Path(r.log_path).exists() for r in processes.running)
