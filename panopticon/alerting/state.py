"""The state of one alert rule from one evaluation to the next. Pure code.

    inactive --condition--> pending --held `for`--> firing --condition gone--> resolved
        ^                      |                                               |
        +----condition gone----+              resolved --condition--> pending (or firing when `for` is 0)

A rule with `for: 0s` goes from inactive (or resolved) straight to firing. `resolved` stays until the condition
holds again. An evaluation that could not be made (`Reading.error`) changes nothing. Every change is stored in
the history; a change to firing or to resolved is notified (`NOTIFIED`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from panopticon.query.alerts import Reading

NOTIFIED = ("firing", "resolved")


@dataclass(frozen=True)
class RuleState:
    state: str = "inactive"
    since_ms: int | None = None  # when it entered `state`
    active_since_ms: int | None = None  # since when the condition has held without a break
    seq: int = 0  # changes so far: the next change is number seq + 1
    value: float | None = None
    evaluated_ms: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    previous: str
    state: str
    at_ms: int
    seq: int
    active_since_ms: int | None

    @property
    def notified(self) -> bool:
        return self.state in NOTIFIED


def step(current: RuleState, reading: Reading, *, for_ms: int, at_ms: int) -> tuple[RuleState, Change | None]:
    """The rule's state after `reading` at `at_ms`, and the change it made (None when it stays)."""
    if reading.error is not None:
        return replace(current, evaluated_ms=at_ms), None
    measured = replace(current, value=reading.value, evaluated_ms=at_ms, detail=reading.detail)
    if reading.active:
        active_since = current.active_since_ms if current.state in ("pending", "firing") and \
            current.active_since_ms is not None else at_ms
        target = "firing" if at_ms - active_since >= for_ms else "pending"
    else:
        active_since = None
        target = {"pending": "inactive", "firing": "resolved"}.get(current.state, current.state)
    if target == current.state:
        return replace(measured, active_since_ms=active_since), None
    change = Change(current.state, target, at_ms, current.seq + 1, active_since)
    return replace(measured, state=target, since_ms=at_ms, active_since_ms=active_since, seq=change.seq), change
