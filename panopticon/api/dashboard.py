"""The dashboard at `/`: one HTML page shell and its static files, all shipped inside the package.

The pages are plain ES modules under `static/` (no build step) with small vendored libraries pinned
by version, their licences beside them (`static/vendor/`). The browser draws everything from the
`/query/...` API, so the shell and the files carry no data: they are served without a token even
when API_AUTH_TOKENS is set (see `security.EXEMPT_ENDPOINTS`), and the page asks for a token and sends
it as `Authorization: Bearer` on every API call (and as `token=` to the WebSocket).

Routing is in the URL's fragment (`/#/service/checkout?start=6h`), so every page is linkable without
a server route per page, and no page path can shadow an API path.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from flask import Blueprint, Response, abort, current_app, send_from_directory

from panopticon.api.openapi import operation
from panopticon.settings import Settings

blueprint = Blueprint("dashboard", __name__)

STATIC = Path(__file__).resolve().parent / "static"
SHELL = "index.html"
ASSET_PREFIX = "/ui/"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
          ".png": "image/png", ".txt": "text/plain", "": "text/plain"}  # "": the vendored LICENSE files


@cache
def assets() -> tuple[str, ...]:
    """Every file the page may load (relative POSIX paths); anything else is a 404."""
    return tuple(sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*")
                        if p.is_file() and p.name != SHELL and _servable(p)))


def _servable(path: Path) -> bool:
    return path.suffix in _TYPES if path.suffix else path.name == "LICENSE"


def page_config(settings: Settings) -> dict[str, Any]:
    """What the page needs to know before its first call: whether to ask for a token, and where the ws is."""
    return {"auth": bool(settings.api_auth_tokens), "ws_url": settings.dashboard_ws_url,
            "ws_port": settings.ws_port, "ws_path": settings.ws_path}


def content_security_policy(settings: Settings) -> str:
    """Only our own files run; the page may connect to this origin and to the error-log WebSocket."""
    if settings.dashboard_ws_url:
        parts = urlsplit(settings.dashboard_ws_url)
        socket = f"{parts.scheme}://{parts.netloc}"
    else:  # the host is the page's own, known only in the browser: allow WebSocket schemes
        socket = "ws: wss:"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {socket}; font-src 'self'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


@cache
def _shell_text() -> str:
    return (STATIC / SHELL).read_text()


def _config_json(settings: Settings) -> str:
    # Inside <script type="application/json">: '<' escaped so no value can close the element.
    return orjson.dumps(page_config(settings)).decode().replace("<", "\\u003c")


@blueprint.get("/")
@operation(summary="The dashboard (HTML page shell; it holds no data and needs no token).",
           response={"type": "string"}, media_types=("text/html",), errors=())
def index() -> Response:
    """Services, a service's charts and endpoints, traces, logs and live errors, drawn from `/query/...`."""
    settings: Settings = current_app.config["PANOPTICON_SETTINGS"]
    response = Response(_shell_text().replace("{{CONFIG}}", _config_json(settings)), mimetype="text/html")
    response.headers["Content-Security-Policy"] = content_security_policy(settings)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get(f"{ASSET_PREFIX}<path:asset>")
@operation(summary="Static files of the dashboard (scripts, styles, vendored libraries and their licences).",
           response={"type": "string", "format": "binary"},
           path_params={"asset": {"type": "string", "enum": list(assets()), "description": "File path."}},
           media_types=tuple(sorted(set(_TYPES.values()))), errors=(404,))
def asset(asset: str) -> Response:
    """A file of the package's `api/static/` folder; revalidated on each load (ETag), so an upgrade shows at once."""
    if asset not in assets():
        abort(404, description=f"no dashboard file {asset!r}")
    response = send_from_directory(STATIC, asset, max_age=0, mimetype=_TYPES[Path(asset).suffix])
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
