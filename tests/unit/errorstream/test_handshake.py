"""The `ws` handshake is refused before the upgrade: origin 403, token 401, parameters 400, capacity 503.

Flask's test client cannot speak WebSocket, which is the point: every refusal here happens before the
upgrade would start. The hub is never started (no Redis in unit tests).
"""

from __future__ import annotations

import pytest

from panopticon.api.security import origin_allowed
from panopticon.api.ws import create_ws_app
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


def test_metrics_need_the_token_and_health_does_not(client) -> None:
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200 and b"panopticon_ws_clients" in answer.data
    assert client.get("/healthz").status_code == 200


def test_health_reports_the_hub(client) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json["clients"] == 0
    assert client.get("/readyz").status_code == 503, "not subscribed yet"


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        pytest.param(None, "ws.example:3010", (), True, id="no-origin-not-a-browser"),
        pytest.param("https://evil.example", "ws.example:3010", (), False, id="foreign-refused-by-default"),
        pytest.param("http://ws.example:3010", "ws.example:3010", (), True, id="same-origin"),
        pytest.param("http://WS.example:3010/", "ws.example:3010", (), True, id="same-origin-any-case"),
        pytest.param("http://ws.example:3001", "ws.example:3010", (), True, id="our-dashboard-on-api-port"),
        pytest.param("http://ws.example:8080", "ws.example:3010", (), False, id="same-host-other-port"),
        pytest.param("https://apm.example", "apm.example", (), True, id="behind-a-tls-proxy"),
        pytest.param("http://ws.example.evil:3010", "ws.example:3010", (), False, id="suffix-is-not-the-host"),
        pytest.param("http://127.0.0.1:5173", "ws.example:3010", (), True, id="loopback-v4"),
        pytest.param("http://127.9.9.9:1", "ws.example:3010", (), True, id="loopback-v4-range"),
        pytest.param("http://[::1]:8000", "ws.example:3010", (), True, id="loopback-v6"),
        pytest.param("http://localhost:3000", "ws.example:3010", (), True, id="localhost"),
        pytest.param("http://localhost:3000", "ws.example:3010", ("https://ops.example",), False,
                     id="loopback-needs-listing-once-a-list-is-set"),
        pytest.param("http://ws.example:3010", "ws.example:3010", ("https://ops.example",), True,
                     id="own-origin-always"),
        pytest.param("null", "ws.example:3010", (), False, id="null-origin"),
        pytest.param("file://", "ws.example:3010", (), False, id="file-page"),
        pytest.param("http://127.0.0.1.evil.example", "ws.example:3010", (), False, id="looks-like-loopback"),
        pytest.param("https://a.example/", "ws.example:3010", ("https://A.example",), True, id="listed"),
        pytest.param("https://b.example", "ws.example:3010", ("https://a.example",), False, id="not-listed"),
        pytest.param("https://b.example", "ws.example:3010", ("*",), True, id="star"),
        pytest.param("http://[bad", "ws.example:3010", (), False, id="unreadable-origin"),
    ],
)
def test_origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed, own_ports=(3001,)) is ok


def test_a_foreign_origin_is_refused_by_default_and_our_own_accepted(tmp_path) -> None:
    settings = load_settings({}, root=tmp_path)
    client = create_ws_app(settings, hub=IdleHub("redis://unused", "ch", window=100)).test_client()
    foreign = client.get("/ws/error-logs", headers={**UPGRADE, "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and foreign.json["error"]["code"] == "origin_not_allowed"
    # Our own origin passes the origin check: the test client cannot upgrade, so it gets as far as
    # flask-sock, which answers a plain request (not a refusal of ours).
    own = client.get("/ws/error-logs", headers={**UPGRADE, "Origin": "http://localhost"})
    assert own.status_code != 403
