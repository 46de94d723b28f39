"""Parameter handling shared by the query routes: parse with a schema, then check the configured limits.

Everything here runs before any engine call, so a bad or over-limit request costs the engine nothing.
"""

from __future__ import annotations

import re
import time
from typing import Any

from flask import current_app, request
from marshmallow import Schema, ValidationError

from panopticon.api.services import services
from panopticon.exceptions import InvalidParameter
from panopticon.query.cache import AnswerCache
from panopticon.query.search import Sort
from panopticon.query.timeparse import UNITS_MS, TimeRange, resolve_range
from panopticon.settings import Settings
from panopticon.storage import SearchStore

_ID = re.compile(r"[!-9;-~]{1,128}\Z")


def settings() -> Settings:
    return current_app.config["PANOPTICON_SETTINGS"]


def store() -> SearchStore:
    return services(current_app).store


def timeout() -> float:
    return settings().query_timeout_seconds


def now_ms() -> int:
    return int(time.time() * 1000)


def load_args(schema: Schema) -> dict[str, Any]:
    """The query string loaded by `schema`; a ValidationError becomes InvalidParameter naming the parameter."""
    try:
        return schema.load(request.args)
    except ValidationError as exc:
        raise invalid(exc) from None


def invalid(exc: ValidationError) -> InvalidParameter:
    messages = exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}
    problems = {name: _flatten(problem) for name, problem in sorted(messages.items())}
    for name, problem in problems.items():
        if problem == "Unknown field.":
            problems[name] = "unknown parameter"
    first = next(iter(problems))
    if len(problems) == 1:
        return InvalidParameter(first, problems[first])
    return InvalidParameter(first, "; ".join(f"{name}: {problem}" for name, problem in problems.items()))


def _flatten(problem: Any) -> str:
    if isinstance(problem, list):
        return " ".join(_flatten(p) for p in problem)
    if isinstance(problem, dict):
        return " ".join(_flatten(p) for p in problem.values())
    return str(problem)


def window(args: dict[str, Any], default: str) -> TimeRange:
    """The [start, end) of the request; `default` (like "15m") is the length when start is absent."""
    amount, unit = int(default[:-1]), default[-1]
    return resolve_range(args.get("start"), args.get("end"), now_ms=now_ms(), default_ms=amount * UNITS_MS[unit],
                         max_days=settings().query_max_range_days)


def page_limit(args: dict[str, Any]) -> int:
    limit, maximum = args["limit"], settings().query_max_page_size
    if limit > maximum:
        raise InvalidParameter("limit", f"must be at most {maximum} (QUERY_MAX_PAGE_SIZE)")
    return limit


def sort(args: dict[str, Any]) -> Sort:
    return Sort(args["sort"], args["order"])


def path_id(value: str, parameter: str) -> str:
    if not _ID.match(value):
        raise InvalidParameter(parameter, "must be 1-128 printable ASCII characters, no spaces or ':'")
    return value


def path_text(value: str, parameter: str, max_chars: int = 256) -> str:
    if not 1 <= len(value) <= max_chars:
        raise InvalidParameter(parameter, f"must be 1-{max_chars} characters")
    return value


def answer_cache() -> AnswerCache:
    """The app's cache of aggregated answers (off when REDIS_HOST is unset)."""
    app = current_app
    found = app.extensions.get("panopticon.cache")
    if found is None:
        config = settings()
        found = app.extensions["panopticon.cache"] = AnswerCache(
            services(app).redis, config.metrics_cache_prefix, config.metrics_cache_ttl_seconds,
            config.rollup_cache_ttl_seconds)
    return found
