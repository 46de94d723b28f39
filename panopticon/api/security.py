"""Optional bearer-token auth (API_AUTH_TOKENS) and CORS (CORS_ORIGINS) for dashboards.

Auth: when tokens are configured, every route except the health routes and the dashboard's page
shell and static files needs `Authorization: Bearer <token>`; tokens are compared in constant time.
The dashboard's shell and files hold no data: they must load so the page can ask for a token, which
it then sends on every `/query/...` call. The docs page and `/openapi.json` are protected, because
they describe the data. CORS preflight (`OPTIONS`) is
answered before auth, since browsers never send credentials on a preflight.

CORS: an Origin allowed by `origin_allowed` (our own origin, one in CORS_ORIGINS or any with '*', and
loopback origins while CORS_ORIGINS is empty) gets the allow headers; others get none, and the browser
blocks the call. Only GET is ever allowed: the API is read-only. The WebSocket handshake (`api/ws.py`)
applies the same `origin_allowed` to WS_ALLOWED_ORIGINS, and refuses the others with 403.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, abort, request

from panopticon.access import is_loopback, token_ok
from panopticon.settings import Settings

EXEMPT_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "dashboard.index", "dashboard.asset",
                              "lens.index", "lens.config", "lens.asset"})
ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-Id"
EXPOSED_HEADERS = "X-Cache, X-Request-Id, Retry-After"
PREFLIGHT_MAX_AGE = "600"


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _host_port(netloc: str, scheme: str | None) -> tuple[str, int | None] | None:
    """(lower-case host, port) of `host[:port]`; the port defaults by scheme (None: no port, no scheme).
    None when unreadable."""
    try:
        parts = urlsplit(f"//{netloc.strip()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None or scheme is None else _DEFAULT_PORTS[scheme]


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...], *,
                   own_ports: tuple[int, ...] = ()) -> bool:
    """May a browser page at `origin` use this endpoint (the WebSocket handshake, a CORS read)?

    No Origin: not a browser, nothing cross-site to refuse. Our own origin is always allowed: the host
    and port of the request's `Host` header, or that host on one of `own_ports` (the dashboard, served
    on API_PORT, opens the socket on WS_PORT). Any other origin must be listed in `allowed` ('*' for
    any); while `allowed` is empty, loopback origins (127.0.0.0/8, ::1, localhost) are accepted too.
    `null` (sandboxed frames, file: pages) is never our own origin.
    """
    if origin is None:
        return True
    wanted = origin.strip().rstrip("/").lower()
    if "*" in allowed or any(wanted == a.strip().rstrip("/").lower() for a in allowed):
        return True
    try:
        parts = urlsplit(wanted)
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS:
        return False  # "null", or not a web origin at all
    page = _host_port(parts.netloc, parts.scheme)
    if page is None:
        return False
    # A Host without a port names the default port of a scheme we may not know (TLS may end at a proxy
    # in front of us): the host name alone decides then.
    served = _host_port(host, None) if host else None
    if served is not None and page[0] == served[0] and (
            served[1] is None or page[1] == served[1] or page[1] in own_ports):
        return True
    return not allowed and is_loopback(page[0])


def allowed_origin(origin: str | None, origins: tuple[str, ...], host: str | None = None, *,
                   own_ports: tuple[int, ...] = ()) -> str | None:
    """The value of Access-Control-Allow-Origin for this request's Origin, or None."""
    if not origin:
        return None
    if "*" in origins:
        return "*"
    return origin if origin_allowed(origin, host, origins, own_ports=own_ports) else None


def init_security(app: Flask, settings: Settings) -> None:
    tokens, origins = settings.api_auth_tokens, settings.cors_origins
    own_ports = (settings.api_port,)

    @app.before_request
    def preflight_and_auth() -> Response | None:
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            return Response(status=204)
        if tokens and request.endpoint not in EXEMPT_ENDPOINTS and not token_ok(
                request.headers.get("Authorization"), tokens):
            abort(401, description="a valid bearer token is required (Authorization: Bearer <token>)")
        return None

    @app.after_request
    def cors_headers(response: Response) -> Response:
        allow = allowed_origin(request.headers.get("Origin"), origins, request.host, own_ports=own_ports)
        if allow is not None:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        if "*" not in origins:  # the answer depends on the Origin (loopback, own origin, the list)
            response.vary.add("Origin")
        return response
