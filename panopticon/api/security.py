"""Optional bearer-token auth (API_AUTH_TOKENS) and CORS (CORS_ORIGINS) for dashboards.

Auth: when tokens are configured, every route except the health routes and the dashboard's page
shell and static files needs `Authorization: Bearer <token>`; tokens are compared in constant time.
The dashboard's shell and files hold no data: they must load so the page can ask for a token, which
it then sends on every `/query/...` call. The docs page and `/openapi.json` are protected, because
they describe the data. CORS preflight (`OPTIONS`) is
answered before auth, since browsers never send credentials on a preflight.

CORS: an Origin in CORS_ORIGINS (or any, with '*') gets the allow headers; others get none, and the
browser blocks the call. Only GET is ever allowed: the API is read-only.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, abort, request

from panopticon.settings import Settings

EXEMPT_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "dashboard.index", "dashboard.asset"})
ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-Id"
EXPOSED_HEADERS = "X-Cache, X-Request-Id, Retry-After"
PREFLIGHT_MAX_AGE = "600"


def token_ok(header: str | None, tokens: tuple[str, ...]) -> bool:
    """True when `header` is `Bearer <one of tokens>` (case-insensitive scheme, constant-time compare)."""
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = token.strip().encode()
    matched = False
    for candidate in tokens:  # no early exit: the time taken does not say which token was close
        matched |= hmac.compare_digest(given, candidate.encode())
    return matched


def allowed_origin(origin: str | None, origins: tuple[str, ...]) -> str | None:
    """The value of Access-Control-Allow-Origin for this request's Origin, or None."""
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def init_security(app: Flask, settings: Settings) -> None:
    tokens, origins = settings.api_auth_tokens, settings.cors_origins

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
        allow = allowed_origin(request.headers.get("Origin"), origins)
        if allow is not None:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        if origins and "*" not in origins:
            response.vary.add("Origin")
        return response
