"""Settings: every variable parsed, validated, and documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from panopticon.exceptions import ConfigError
from panopticon.settings import (
    env_example,
    load_settings,
    redacted,
    settings_fields,
    to_environ,
    with_env_table,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_load(tmp_path: Path) -> None:
    settings = load_settings({}, root=tmp_path)
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.cache_enabled is False
    assert settings.data_stream("logs-apm") == "logs-apm"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"BULK_BATCH_SIZE": "abc"}, "BULK_BATCH_SIZE: expected an integer", id="not-an-int"),
        pytest.param({"BULK_BATCH_SIZE": "0"}, "BULK_BATCH_SIZE: must be at least 1", id="below-minimum"),
        pytest.param({"USE_ISM": "maybe"}, "USE_ISM: expected true or false", id="not-a-bool"),
        pytest.param({"SEARCH_ENGINE": "solr"}, "SEARCH_ENGINE: expected one of", id="not-a-choice"),
        pytest.param({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM: expected one of", id="sasl"),
        pytest.param({"WS_PATH": "ws"}, "WS_PATH: must start with '/'", id="path"),
        pytest.param({"SEARCH_CA_FILE": "/nope.pem"}, "SEARCH_CA_FILE: file not found", id="missing-file"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env, root=tmp_path)


def test_env_files_then_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BULK_BATCH_SIZE=10\nAPI_PORT=4000\nWS_PORT=4010\n")
    (tmp_path / ".env.local").write_text("BULK_BATCH_SIZE=20\nAPI_PORT=4001\n")
    settings = load_settings({"BULK_BATCH_SIZE": "30"}, root=tmp_path)
    assert (settings.bulk_batch_size, settings.api_port, settings.ws_port) == (30, 4001, 4010)


def test_round_trip_through_environ(tmp_path: Path) -> None:
    settings = load_settings({"API_AUTH_TOKENS": "a, b", "REDIS_HOST": "cache"}, root=tmp_path)
    assert load_settings(to_environ(settings), root=tmp_path) == settings


def test_secrets_are_redacted(tmp_path: Path) -> None:
    settings = load_settings({"OPENSEARCH_PASSWORD": "hunter2", "API_AUTH_TOKENS": "tok"}, root=tmp_path)
    shown = redacted(settings)
    assert "hunter2" not in str(shown) and "tok" not in str(shown.values())


def test_env_example_is_current_and_complete() -> None:
    text = (ROOT / ".env.example").read_text()
    assert text == env_example(), "run `make env-example` and commit .env.example"
    for f in settings_fields():
        assert f"\n{f.metadata['env']}=" in text


def test_operations_md_documents_every_variable() -> None:
    text = (ROOT / "OPERATIONS.md").read_text()
    assert text == with_env_table(text), "run `make docs` and commit OPERATIONS.md"
    for f in settings_fields():
        assert f"`{f.metadata['env']}`" in text


def test_bad_value_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "panopticon.settings"], cwd=tmp_path,
                            env={"BULK_BATCH_SIZE": "abc", "PATH": "/usr/bin"}, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "panopticon: configuration error: BULK_BATCH_SIZE: expected an integer, got 'abc'"]


def test_sasl_without_tls_is_refused_naming_the_variables(tmp_path: Path) -> None:
    sasl = {"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM=PLAIN without KAFKA_SSL=true.*"
                                          "KAFKA_ALLOW_PLAINTEXT_SASL=true"):
        load_settings(sasl, root=tmp_path)
    assert load_settings({**sasl, "KAFKA_SSL": "true"}, root=tmp_path).kafka_ssl
    assert load_settings({**sasl, "KAFKA_ALLOW_PLAINTEXT_SASL": "true"}, root=tmp_path).kafka_allow_plaintext_sasl
    # MSK IAM always speaks TLS, so a region alone is fine; `replace` checks the rule as well.
    assert load_settings({"KAFKA_AWS_REGION": "eu-west-1"}, root=tmp_path).kafka_aws_region == "eu-west-1"
    with pytest.raises(ConfigError, match="KAFKA_SSL"):
        load_settings({}, root=tmp_path).replace(kafka_sasl_mechanism="SCRAM-SHA-256")


def test_sasl_refusal_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "panopticon.settings"], cwd=tmp_path,
                            env={"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_PASSWORD": "hunter2",
                                 "PATH": "/usr/bin"}, capture_output=True, text=True)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "KAFKA_SASL_MECHANISM=PLAIN without KAFKA_SSL=true" in line and "hunter2" not in line


def test_redis_url_with_tls_user_and_password(tmp_path: Path) -> None:
    ca = tmp_path / "ca dir" / "ca.pem"
    ca.parent.mkdir()
    ca.write_text("x")
    settings = load_settings({"REDIS_HOST": "cache.example", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss/w:rd",
                              "REDIS_USERNAME": "app", "REDIS_TLS": "true", "REDIS_CA_FILE": str(ca)}, root=tmp_path)
    quoted_ca = str(ca).replace("/", "%2F").replace(" ", "%20")
    assert settings.redis_url() == f"rediss://app:p%40ss%2Fw%3Ard@cache.example:6380/0?ssl_cert_reqs=required" \
                                   f"&ssl_ca_certs={quoted_ca}"
    assert settings.broker_url.startswith("rediss://app:p%40ss%2Fw%3Ard@cache.example:6380/1?")
    assert settings.result_backend.startswith("rediss://app:p%40ss%2Fw%3Ard@cache.example:6380/2?")
    plain = load_settings({"REDIS_HOST": "h"}, root=tmp_path)
    assert plain.redis_url() == "redis://h:6379/0"
    assert load_settings({"REDIS_USERNAME": "app"}, root=tmp_path).redis_url(3) == "redis://app@127.0.0.1:6379/3"


def test_redis_tls_url_is_read_alike_by_redis_py_kombu_and_celery(tmp_path: Path) -> None:
    import ssl

    import redis
    from celery import Celery
    from celery.backends.redis import RedisBackend
    from kombu import Connection

    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = load_settings({"REDIS_HOST": "localhost", "REDIS_PASSWORD": "pw", "REDIS_TLS": "true",
                              "REDIS_CA_FILE": str(ca)}, root=tmp_path)
    pool = redis.Redis.from_url(settings.redis_url()).connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == str(ca) and pool.connection_kwargs["password"] == "pw"
    broker = Connection(settings.broker_url)
    assert broker.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}
    backend = RedisBackend(url=settings.result_backend, app=Celery(set_as_current=False))
    assert backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert backend.connparams["ssl_ca_certs"] == str(ca)


@pytest.mark.parametrize("value", ["alice", ":pw", "a:b,c"])
def test_flower_basic_auth_must_be_user_colon_password(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FLOWER_BASIC_AUTH: expected user:password"):
        load_settings({"FLOWER_BASIC_AUTH": value}, root=tmp_path)


@pytest.mark.parametrize("value", ["", " ", "http://x", "a b"])
def test_bind_hosts_are_addresses(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="API_BIND_HOST: expected an address"):
        load_settings({"API_BIND_HOST": value}, root=tmp_path)


def test_every_port_defaults_to_loopback(tmp_path: Path) -> None:
    settings = load_settings({}, root=tmp_path)
    hosts = [settings.api_bind_host, settings.ws_bind_host, settings.metrics_bind_host, settings.flower_bind_host,
             settings.otlp_bind_host]
    assert hosts == ["127.0.0.1"] * 5
    for line in (ROOT / "Procfile").read_text().splitlines():
        assert "0.0.0.0" not in line, line


def test_urls_in_messages_never_carry_the_password() -> None:
    from panopticon.settings import without_password

    assert without_password("rediss://app:p%40ss@cache:6380/0?ssl_cert_reqs=required") == \
        "rediss://app:***@cache:6380/0?ssl_cert_reqs=required"
    assert without_password("redis://:secret@h:6379/1") == "redis://:***@h:6379/1"
    assert without_password("redis://h:6379/1") == "redis://h:6379/1"
    assert without_password("redis://app@h:6379/1") == "redis://app@h:6379/1"
