"""Bearer tokens and CORS origins (pure helpers of panopticon.api.security)."""

from __future__ import annotations

import pytest

from panopticon.access import token_ok
from panopticon.api.security import allowed_origin


@pytest.mark.parametrize(
    ("header", "ok"),
    [("Bearer t1", True), ("bearer t2", True), ("Bearer  t1 ", True), ("Bearer t3", False), ("t1", False),
     ("Basic t1", False), ("Bearer", False), ("", False), (None, False)],
)
def test_token_ok(header: str | None, ok: bool) -> None:
    assert token_ok(header, ("t1", "t2")) is ok


def test_allowed_origin() -> None:
    assert allowed_origin("https://a", ("https://a",)) == "https://a"
    assert allowed_origin("https://b", ("https://a",)) is None
    assert allowed_origin("https://b", ("*",)) == "*"
    assert allowed_origin(None, ("*",)) is None
    assert allowed_origin("https://a", ()) is None
    # The default (empty list) admits loopback pages and our own origin, nothing else.
    assert allowed_origin("http://localhost:5173", ()) == "http://localhost:5173"
    assert allowed_origin("https://evil.example", (), "api.example:3001") is None
    assert allowed_origin("http://api.example:3001", (), "api.example:3001") == "http://api.example:3001"
