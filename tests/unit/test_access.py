"""The ports rule: loopback, the exposure warning, the metrics port's token, Flower's address."""

from __future__ import annotations

from pathlib import Path

import pytest

from panopticon import telemetry
from panopticon.access import exposure_warning, is_loopback
from panopticon.monitor import flower_command
from panopticon.settings import load_settings


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("LOCALHOST", True), ("app.localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
     ("example.com", False), ("localhost.example.com", False), ("", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_warning_only_beyond_loopback_without_tokens() -> None:
    assert exposure_warning("web", "API_BIND_HOST", "127.0.0.1", ()) is None
    assert exposure_warning("web", "API_BIND_HOST", "0.0.0.0", ("t",)) is None
    text = exposure_warning("web", "API_BIND_HOST", "0.0.0.0", ())
    assert text is not None and "API_BIND_HOST" in text and "API_AUTH_TOKENS" in text


def _call(app, headers: dict[str, str]) -> tuple[str, bytes]:
    seen: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "", "wsgi.input": None,
               **{f"HTTP_{k.upper()}": v for k, v in headers.items()}}
    body = b"".join(app(environ, lambda status, _headers, *_: seen.append(status)))
    return seen[0], body


def test_metrics_port_needs_the_token_when_tokens_are_set() -> None:
    protected = telemetry.metrics_app(("s3cret",))
    assert _call(protected, {})[0].startswith("401")
    assert _call(protected, {"Authorization": "Bearer wrong"})[0].startswith("401")
    status, body = _call(protected, {"Authorization": "Bearer s3cret"})
    assert status.startswith("200") and b"panopticon_batches_in_flight" in body
    assert _call(telemetry.metrics_app(()), {})[0].startswith("200")


def test_flower_binds_loopback_without_a_password(tmp_path: Path) -> None:
    argv, env, warning = flower_command(load_settings({"FLOWER_BIND_HOST": "0.0.0.0"}, root=tmp_path))
    assert "--address=127.0.0.1" in argv and env == {}
    assert warning is not None and "FLOWER_BASIC_AUTH" in warning and "ignored" in warning
    argv, env, warning = flower_command(load_settings({"FLOWER_BIND_HOST": "0.0.0.0", "FLOWER_BASIC_AUTH": "a:pw",
                                                       "FLOWER_PORT": "5601"}, root=tmp_path))
    assert "--address=0.0.0.0" in argv and "--port=5601" in argv and warning is None
    assert env == {"FLOWER_BASIC_AUTH": "a:pw"} and not any("pw" in a for a in argv), "never on the command line"
