"""Parameter handling shared by the routes: load the query string with the route's schema into a request.

A format problem becomes `InvalidParameter` naming the parameter, before the query service or the engine
is asked anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request
from marshmallow import Schema, ValidationError

from panopticon.exceptions import InvalidParameter
from panopticon.model import ID_RE, ID_RULE
from panopticon.query.service import QueryService

R = TypeVar("R")


def query_service() -> QueryService:
    """The app's query service, built once by `create_app`."""
    service: QueryService = current_app.extensions["panopticon.query"]
    return service


def load(schema: Schema, build: Callable[..., R], **path: Any) -> R:
    """`build(**path, **parameters)`: the query string loaded by `schema`, plus the path parameters."""
    return build(**path, **load_args(schema))


def load_args(schema: Schema) -> dict[str, Any]:
    """The query string loaded by `schema`; a ValidationError becomes InvalidParameter naming the parameter."""
    try:
        loaded: dict[str, Any] = schema.load(request.args)
    except ValidationError as exc:
        raise invalid(exc) from None
    return loaded


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


def path_id(value: str, parameter: str) -> str:
    if not ID_RE.match(value):
        raise InvalidParameter(parameter, ID_RULE)
    return value


def path_text(value: str, parameter: str, max_chars: int = 256) -> str:
    if not 1 <= len(value) <= max_chars:
        raise InvalidParameter(parameter, f"must be 1-{max_chars} characters")
    return value
