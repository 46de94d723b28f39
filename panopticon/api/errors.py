"""The one error envelope: `{"error": {"code": ..., "message": ..., "parameter": ...}}`.

Every failure a client can see leaves through here:

    InvalidParameter     400 invalid_parameter   names the parameter and what was wrong
    HTTPException        its own status          not_found, method_not_allowed, unauthorized, ...
    EngineUnavailable    503 engine_unavailable  with Retry-After: transient (a partial answer too), try again
    QueryTimeout         503 query_timeout       with Retry-After: the answer passed QUERY_TIMEOUT_SECONDS
    EngineRejected       502 engine_rejected     the engine refused a query we built: our bug, logged
    Redis errors         503 cache_unavailable   only where Redis is required (never the cache path)
    anything else        500 internal_error      logged with its stack; the client gets no details

Under `/api/` (the Jaeger query API) and `/api/v2/` (Zipkin's) the same statuses and messages leave in that
API's own error shape (`envelope`), because their clients read errors that way.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from panopticon.exceptions import EngineRejected, EngineUnavailable, InvalidParameter, QueryTimeout

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


JAEGER_PREFIX = "/api/"
ZIPKIN_PREFIXES = ("/api/v2/", "/zipkin/api/v2/")


def envelope(status: int, code: str, message: str, parameter: str | None = None) -> Response:
    """The error answer, in the shape the caller's API uses: ours, Jaeger's (`errors: [{code, msg}]`, which the
    Jaeger UI and Grafana read) or Zipkin's (the message as plain text, as zipkin-server answers)."""
    path = request.path if has_request_context() else ""
    if path.startswith(ZIPKIN_PREFIXES):
        response = Response(message, status=status, mimetype="text/plain")
    elif path.startswith(JAEGER_PREFIX):
        response = jsonify(data=None, total=0, limit=0, offset=0, errors=[{"code": status, "msg": message}])
        response.status_code = status
    else:
        response = jsonify(error={"code": code, "message": message, "parameter": parameter})
        response.status_code = status
    return response


def _snake(name: str) -> str:
    return name.lower().replace(" ", "_").replace("-", "_").replace("'", "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(InvalidParameter)
    def invalid_parameter(exc: InvalidParameter) -> Response:
        return envelope(400, "invalid_parameter", str(exc), exc.parameter)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = envelope(exc.code or 500, _snake(exc.name), exc.description or exc.name)
        allow = exc.get_response().headers.get("Allow")
        if allow:
            response.headers["Allow"] = allow
        if exc.code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="panopticon"'
        return response

    @app.errorhandler(EngineUnavailable)
    def engine_unavailable(exc: EngineUnavailable) -> Response:
        log.warning("search engine unavailable: %s", exc)
        response = envelope(503, "engine_unavailable",
                            f"the search engine is not answering; retry in {RETRY_AFTER_SECONDS} seconds")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(QueryTimeout)
    def query_timeout(exc: QueryTimeout) -> Response:
        log.warning("query deadline passed: %s", exc)
        response = envelope(503, "query_timeout", f"{exc}; retry in {RETRY_AFTER_SECONDS} seconds, or ask for less")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(EngineRejected)
    def engine_rejected(exc: EngineRejected) -> Response:
        log.error("search engine rejected a query: %s", exc)
        return envelope(502, "engine_rejected", "the search engine refused the query")

    @app.errorhandler(redis.RedisError)
    def redis_unavailable(exc: redis.RedisError) -> Response:
        log.warning("redis unavailable: %s", exc)
        response = envelope(503, "cache_unavailable", f"redis is not answering; retry in {RETRY_AFTER_SECONDS} "
                                                      "seconds")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("unhandled error")
        return envelope(500, "internal_error", "internal error; it has been logged")
