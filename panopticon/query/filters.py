"""Engine query clauses built safely from user input.

Only `term`, `terms`, `range`, `match` and an escaped `wildcard` are ever built from what a request
sends: user text never reaches `query_string`, `regexp` or a script, so no request can inject query
syntax, run an expensive regular expression or execute code in the engine. Every builder here takes
plain values and returns a plain dict; nothing is concatenated into a query language.
"""

from __future__ import annotations

from typing import Any

Clause = dict[str, Any]

# The characters that mean something to a `wildcard` query; each is escaped with a backslash.
_WILDCARD_SPECIAL = ("\\", "*", "?")
MAX_SEARCH_CHARS = 256


def term(field: str, value: Any) -> Clause:
    return {"term": {field: value}}


def terms(field: str, values: list[Any]) -> Clause:
    return {"terms": {field: list(values)}}


def time_range(field: str, start_ms: int, end_ms: int) -> Clause:
    """[start, end) on a date field, in epoch milliseconds (no date math from the user)."""
    return {"range": {field: {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}


def number_range(field: str, minimum: float | None = None, maximum: float | None = None) -> Clause | None:
    """Inclusive bounds on a numeric field; None when neither bound is given."""
    bounds = {name: value for name, value in (("gte", minimum), ("lte", maximum)) if value is not None}
    return {"range": {field: bounds}} if bounds else None


def match_text(field: str, text: str) -> Clause:
    """Full-text search: every word must appear (analysed like the field, no query syntax)."""
    return {"match": {field: {"query": text, "operator": "and"}}}


def escape_wildcard(text: str) -> str:
    """`text` with wildcard metacharacters escaped, so it matches only itself."""
    for char in _WILDCARD_SPECIAL:
        text = text.replace(char, "\\" + char)
    return text


def contains(field: str, text: str) -> Clause:
    """Keyword field contains `text` (case-insensitive); the input is escaped, the `*` are ours."""
    return {"wildcard": {field: {"value": f"*{escape_wildcard(text)}*", "case_insensitive": True}}}


def bool_filter(clauses: list[Clause | None], must: list[Clause] | None = None) -> Clause:
    """A `bool` query of non-scoring filters (None entries are dropped) and optional scoring clauses."""
    body: dict[str, Any] = {"filter": [c for c in clauses if c is not None]}
    if must:
        body["must"] = must
    return {"bool": body}


def optional_term(field: str, value: Any) -> Clause | None:
    return None if value is None else term(field, value)
