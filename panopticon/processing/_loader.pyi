"""Types of the compiled fast path (_loader.pyx), for mypy."""

from collections.abc import Callable
from typing import Any

ID: int
UPPER_CHOICE: int
UPPER_TEXT: int
TEXT: int
TIME: int
NUMBER: int
OBJECT: int

class Rule:
    key: str
    camel: str | None
    name: str
    required: bool
    default: Any
    blank_is_absent: bool
    kind: int
    def __init__(self, key: str, camel: str | None, name: str, required: bool, default: Any,
                 blank_is_absent: bool, kind: int, *, min_chars: int = ..., max_chars: int = ...,
                 check: Callable[[Any], Any] | None = ..., allowed: bytes | None = ...,
                 aliases: dict[str, str] | None = ..., choices: frozenset[str] | None = ...,
                 integral_only: bool = ..., low: float | None = ..., high: float | None = ...) -> None: ...

def message(raw: object, max_bytes: int, rules: tuple[Rule, ...],
            http_rules: tuple[Rule, ...] | None) -> tuple[dict[str, Any], dict[str, Any]] | None: ...
def fields(rules: tuple[Rule, ...], http_rules: tuple[Rule, ...] | None,
           source: dict[str, Any]) -> dict[str, Any] | None: ...
def own_time(value: object) -> float | None: ...
def iso_ms(epoch_ms: float) -> str: ...
