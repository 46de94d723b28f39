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
