"""The dashboard's shell and files: served without a token (they hold no data), everything else still guarded."""

from __future__ import annotations

import orjson
import pytest

from panopticon.api import create_app
from panopticon.api.dashboard import assets, content_security_policy, page_config
from panopticon.exceptions import ConfigError
from panopticon.settings import load_settings


def _app(**env: str):
    return create_app(load_settings({"ELASTICSEARCH_NODE": "http://127.0.0.1:9", **env}))


def _config(html: bytes) -> dict:
    start = html.index(b'id="panopticon-config">') + len(b'id="panopticon-config">')
    return orjson.loads(html[start:html.index(b"</script>", start)])


def test_shell_and_files_need_no_token_but_the_api_does() -> None:
    client = _app(API_AUTH_TOKENS="s3cret").test_client()
    shell = client.get("/")
    assert shell.status_code == 200 and shell.mimetype == "text/html"
    assert _config(shell.data) == {"auth": True, "ws_url": "", "ws_port": 3010, "ws_path": "/ws/error-logs"}
    for name in assets():
        response = client.get(f"/ui/{name}")
        assert response.status_code == 200, name
        response.close()
    assert client.get("/query/services").status_code == 401
    assert client.get("/openapi.json").status_code == 401


def test_only_listed_files_are_served() -> None:
    client = _app().test_client()
    for path in ("/ui/../dashboard.py", "/ui/index.html", "/ui/js/nope.js", "/ui/%2e%2e/app.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    assert "vendor/uplot-1.6.32/LICENSE" in assets() and "vendor/uplot-1.6.32/uPlot.esm.js" in assets()


def test_vendored_library_has_its_licence_and_version() -> None:
    client = _app().test_client()
    with client.get("/ui/vendor/uplot-1.6.32/LICENSE") as licence:  # closes the file it streams
        assert licence.status_code == 200 and b"MIT License" in licence.data
    shell = client.get("/").data
    assert b"/ui/vendor/uplot-1.6.32/uPlot.min.css" in shell
    assert b"http://" not in shell and b"https://" not in shell  # nothing fetched from elsewhere


def test_ws_url_comes_from_the_settings() -> None:
    settings = load_settings({"DASHBOARD_WS_URL": "wss://errors.example:8443/ws/error-logs", "WS_PORT": "4010"})
    assert page_config(settings)["ws_url"] == "wss://errors.example:8443/ws/error-logs"
    assert "connect-src 'self' wss://errors.example:8443;" in content_security_policy(settings)
    default = load_settings({})
    assert page_config(default) == {"auth": False, "ws_url": "", "ws_port": 3010, "ws_path": "/ws/error-logs"}
    assert "script-src 'self';" in content_security_policy(default)
    with pytest.raises(ConfigError, match="DASHBOARD_WS_URL: must start with ws:// or wss://"):
        load_settings({"DASHBOARD_WS_URL": "http://errors.example/ws"})


def test_config_cannot_close_its_script_element() -> None:
    settings = load_settings({"WS_PATH": "/</script><script>alert(1)</script>"})
    html = create_app(settings.replace(elasticsearch_node="http://127.0.0.1:9")).test_client().get("/").data
    assert b"</script><script>alert" not in html
    assert _config(html)["ws_path"] == "/</script><script>alert(1)</script>"
