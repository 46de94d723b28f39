"""The `ws` handshake is refused before the upgrade: origin 403, token 401, parameters 400, capacity 503.

Flask's test client cannot speak WebSocket, which is the point: every refusal here happens before the
upgrade would start. The hub is never started (no Redis in unit tests).
"""

from __future__ import annotations

import pytest

from panopticon.api.ws import create_ws_app, origin_allowed
from panopticon.errorstream.hub import ClientQueue, Hub, Subscriber
from panopticon.errorstream.protocol import ClientFilter
from panopticon.settings import load_settings

UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


class IdleHub(Hub):
    def start(self) -> None:  # no Redis here
        pass


@pytest.fixture
def hub() -> IdleHub:
    return IdleHub("redis://unused", "ch", window=100)


@pytest.fixture
def client(tmp_path, hub):
    settings = load_settings({"API_AUTH_TOKENS": "s3cret", "WS_ALLOWED_ORIGINS": "https://ops.example.com",
                              "WS_MAX_CLIENTS": "1"}, root=tmp_path)
    return create_ws_app(settings, hub=hub).test_client()


@pytest.mark.parametrize(
    ("headers", "query", "status", "code"),
    [
        pytest.param({"Origin": "https://evil.example.com", "Authorization": "Bearer s3cret"}, "", 403,
                     "origin_not_allowed", id="foreign-origin"),
        pytest.param({}, "", 401, "unauthorized", id="no-token"),
        pytest.param({"Authorization": "Bearer nope"}, "", 401, "unauthorized", id="wrong-token"),
        pytest.param({}, "?token=nope", 401, "unauthorized", id="wrong-query-token"),
        pytest.param({"Authorization": "Bearer s3cret"}, "?level=DEBUG", 400, "invalid_parameter", id="level"),
        pytest.param({"Origin": "https://ops.example.com"}, "?token=s3cret&since=later", 400, "invalid_parameter",
                     id="since"),
    ],
)
def test_refusals(client, headers: dict[str, str], query: str, status: int, code: str) -> None:
    answer = client.get(f"/ws/error-logs{query}", headers={**UPGRADE, **headers})
    assert answer.status_code == status
    assert answer.json["error"]["code"] == code
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_full_process_refuses_with_503(client, hub) -> None:
    hub.add(Subscriber(ClientFilter(), ClientQueue(1)))
    answer = client.get("/ws/error-logs?token=s3cret", headers=UPGRADE)
    assert answer.status_code == 503 and answer.json["error"]["code"] == "too_many_clients"


def test_health_reports_the_hub(client) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json["clients"] == 0
    assert client.get("/readyz").status_code == 503, "not subscribed yet"


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, ("https://a.example",), True),
        ("https://a.example/", ("https://A.example",), True),
        ("https://b.example", ("https://a.example",), False),
        ("https://b.example", (), True),
        ("https://b.example", ("*",), True),
    ],
)
def test_origin_allowed(origin: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    assert origin_allowed(origin, allowed) is ok
