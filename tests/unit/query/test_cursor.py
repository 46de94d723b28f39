"""Cursors: opaque, tied to their sort, and checked before any engine call."""

from __future__ import annotations

import base64

import orjson
import pytest

from panopticon.exceptions import InvalidParameter
from panopticon.query.search import Sort, decode_cursor, encode_cursor, log_cursor, span_cursor

SORT = Sort("duration_ms", "desc")
FIELDS = ["duration_ms", "trace_id", "span_id"]


def _forge(payload: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def test_round_trip() -> None:
    values = [12.5, "abc", "def"]
    cursor = encode_cursor(SORT, values)
    assert "=" not in cursor and "{" not in cursor
    assert decode_cursor(cursor, SORT, FIELDS) == values
    assert span_cursor(cursor, SORT) == values
    assert span_cursor(None, SORT) is None


def test_a_cursor_belongs_to_its_sort() -> None:
    cursor = encode_cursor(SORT, [12.5, "abc", "def"])
    with pytest.raises(InvalidParameter, match="duration_ms:desc") as caught:
        span_cursor(cursor, Sort("duration_ms", "asc"))
    assert caught.value.parameter == "cursor"


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not a cursor", id="garbage"),
        pytest.param("////", id="bad-base64"),
        pytest.param(_forge([1, 2]), id="not-an-object"),
        pytest.param(_forge({"s": "duration_ms:desc", "v": [1.0, "a"]}), id="too-short"),
        pytest.param(_forge({"s": "duration_ms:desc", "v": ["x", "a", "b"]}), id="string-for-number"),
        pytest.param(_forge({"s": "duration_ms:desc", "v": [1.0, {"query": 1}, "b"]}), id="object-value"),
        pytest.param(_forge({"s": "duration_ms:desc", "v": [True, "a", "b"]}), id="boolean"),
        pytest.param("ü", id="non-ascii"),
    ],
)
def test_forged_cursors_are_400(cursor: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        span_cursor(cursor, SORT)
    assert caught.value.parameter == "cursor"


def test_log_cursor_types() -> None:
    sort = Sort("timestamp", "desc")
    good = encode_cursor(sort, [1_714_564_800_000, "apm.logs", 0, 42])
    assert log_cursor(good, sort) == [1_714_564_800_000, "apm.logs", 0, 42]
    with pytest.raises(InvalidParameter):
        log_cursor(encode_cursor(sort, [1.5, "apm.logs", 0, 42]), sort)  # dates sort as whole ms
    with pytest.raises(InvalidParameter, match="sort"):
        log_cursor(good, Sort("level", "desc"))
