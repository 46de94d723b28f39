"""Bulk bodies are cut below BULK_MAX_REQUEST_MB before they are sent (pure)."""

from __future__ import annotations

from panopticon.storage.store import _bulk_body, _chunks


def test_chunks_stay_under_the_limit_and_keep_the_order() -> None:
    items = [(f"id{i}", b"x" * 100) for i in range(50)]
    chunks = _chunks("create", items, limit=1000)
    assert [item for chunk in chunks for item in chunk] == items
    assert all(len(_bulk_body("create", chunk)) <= 1000 for chunk in chunks)
    assert len(chunks) > 1
    # As full as the limit allows: one more document would not have fitted.
    following = zip(chunks, chunks[1:], strict=False)
    assert all(len(_bulk_body("create", [*chunk, nxt[0]])) > 1000 for chunk, nxt in following)


def test_a_document_larger_than_the_limit_goes_alone() -> None:
    items = [("a", b"x" * 10), ("big", b"y" * 5000), ("b", b"z" * 10)]
    assert [list(chunk) for chunk in _chunks("create", items, limit=1000)] == [
        [items[0]], [items[1]], [items[2]]]
