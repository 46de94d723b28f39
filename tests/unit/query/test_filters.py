"""Query builders: user text only ever lands in term / match / escaped wildcard clauses."""

from __future__ import annotations

import json

import pytest

from panopticon.query import filters as f
from panopticon.query.raw import raw_filter
from panopticon.query.search import LogQuery, SpanQuery, log_filter, span_filter
from panopticon.query.timeparse import TimeRange

HOSTILE = ['*', '?', '\\', 'a*b?c\\', 'message:* OR /.*/', '{"script": "x"}', '" OR 1=1 --', 'foo~2^3']
WINDOW = TimeRange(1_714_564_800_000, 1_714_565_700_000)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("abc", "abc"), ("a*b", "a\\*b"), ("a?b", "a\\?b"), ("a\\b", "a\\\\b"), ("*?\\", "\\*\\?\\\\")],
)
def test_escape_wildcard(text: str, escaped: str) -> None:
    assert f.escape_wildcard(text) == escaped


def test_contains_wraps_the_escaped_text_only() -> None:
    assert f.contains("service_name", "a*") == {
        "wildcard": {"service_name": {"value": "*a\\**", "case_insensitive": True}}}


def _clause_types(query: object) -> set[str]:
    """Every query clause type in a query tree."""
    found: set[str] = set()
    if isinstance(query, dict):
        for key, value in query.items():
            if key in ("term", "terms", "range", "match", "wildcard", "bool", "query_string", "regexp", "script",
                       "simple_query_string", "prefix", "fuzzy"):
                found.add(key)
            found |= _clause_types(value)
    elif isinstance(query, list):
        for item in query:
            found |= _clause_types(item)
    return found


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_never_reaches_query_syntax(text: str) -> None:
    queries = [
        span_filter(SpanQuery(WINDOW, service=text, environment=text, name=text, trace_id=text)),
        log_filter(LogQuery(WINDOW, service=text, text=text, trace_id=text)),
        raw_filter(service=text, environment=text, endpoint=text, start_ms=1, end_ms=2, search=text,
                   group_by="endpoint"),
    ]
    for query in queries:
        assert _clause_types(query) <= {"bool", "term", "terms", "range", "match", "wildcard"}
    wildcard = json.dumps(queries[2])
    assert f.escape_wildcard(text).replace("\\", "\\\\").replace('"', '\\"') in wildcard


def test_message_search_is_a_full_text_match() -> None:
    query = log_filter(LogQuery(WINDOW, text="upstream failed"))
    assert query["bool"]["must"] == [{"match": {"message": {"query": "upstream failed", "operator": "and"}}}]


def test_time_range_is_half_open_epoch_millis() -> None:
    assert f.time_range("@timestamp", 1, 2) == {"range": {"@timestamp": {"gte": 1, "lt": 2, "format": "epoch_millis"}}}


def test_number_range_drops_missing_bounds() -> None:
    assert f.number_range("duration_ms") is None
    assert f.number_range("duration_ms", 5) == {"range": {"duration_ms": {"gte": 5}}}
    assert f.number_range("duration_ms", None, 9.5) == {"range": {"duration_ms": {"lte": 9.5}}}
