"""The alert state machine, step by step."""

from __future__ import annotations

from panopticon.alerting.state import RuleState, step
from panopticon.query.alerts import Reading

ON, OFF, BROKEN = Reading(2.0, True), Reading(0.5, False), Reading(None, False, error="engine down")


def run(readings: list[Reading], for_ms: int, every_ms: int = 60_000) -> list[tuple[str, str | None]]:
    state, out = RuleState(), []
    for n, reading in enumerate(readings):
        state, change = step(state, reading, for_ms=for_ms, at_ms=n * every_ms)
        out.append((state.state, change.state if change else None))
    return out


def test_pending_then_firing_after_for_then_resolved() -> None:
    assert run([OFF, ON, ON, ON, OFF, OFF, ON], for_ms=120_000) == [
        ("inactive", None), ("pending", "pending"), ("pending", None), ("firing", "firing"), ("resolved", "resolved"),
        ("resolved", None), ("pending", "pending")]


def test_for_zero_fires_at_once_and_a_break_resets_pending() -> None:
    assert run([ON, OFF], for_ms=0) == [("firing", "firing"), ("resolved", "resolved")]
    assert run([ON, OFF, ON, ON], for_ms=120_000) == [
        ("pending", "pending"), ("inactive", "inactive"), ("pending", "pending"), ("pending", None)]


def test_an_evaluation_that_failed_changes_nothing() -> None:
    assert run([ON, ON, BROKEN, ON], for_ms=120_000) == [
        ("pending", "pending"), ("pending", None), ("pending", None), ("firing", "firing")]


def test_changes_are_numbered_and_remember_when_the_condition_began() -> None:
    state = RuleState()
    changes = []
    for n, reading in enumerate([ON, ON, ON, OFF]):
        state, change = step(state, reading, for_ms=60_000, at_ms=1000 + n * 30_000)
        if change:
            changes.append(change)
    assert [(c.seq, c.state, c.active_since_ms, c.notified) for c in changes] == [
        (1, "pending", 1000, False), (2, "firing", 1000, True), (3, "resolved", None, True)]
    assert state.seq == 3 and state.value == 0.5
