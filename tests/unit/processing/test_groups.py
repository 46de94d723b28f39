"""The pure part of the `new_group` flag: the first log of each group in a batch, and who opened a group."""

from __future__ import annotations

from panopticon.processing.groups import first_of_each_group, mark


def docs() -> list[tuple[str, dict]]:
    return [("a1", {"fingerprint": "f1"}), ("info", {"level": "INFO"}), ("b1", {"fingerprint": "f2"}),
            ("a2", {"fingerprint": "f1"})]


def test_the_first_log_of_each_group_in_batch_order() -> None:
    firsts = first_of_each_group(docs())
    assert {fp: doc_id for fp, (doc_id, _doc) in firsts.items()} == {"f1": "a1", "f2": "b1"}


def test_only_the_log_the_registry_names_opened_its_group() -> None:
    batch = docs()
    # f1 was opened by this batch's a1; f2 by a log of an earlier batch.
    assert mark(batch, {"f1": "a1", "f2": "older"}) == 1
    flags = {doc_id: doc.get("new_group") for doc_id, doc in batch}
    assert flags == {"a1": True, "info": None, "b1": False, "a2": False}


def test_a_replay_marks_the_same_log() -> None:
    first, again = docs(), docs()
    assert mark(first, {"f1": "a1", "f2": "b1"}) == mark(again, {"f1": "a1", "f2": "b1"}) == 2
    assert first == again
