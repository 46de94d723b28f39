"""Alert rules: the YAML file of ALERT_RULES_FILE, read and checked once at start. Pure code (and one file read).

    receivers:                       # where notifications go (each change to firing and to resolved)
      - name: ops
        url: https://hooks.example.com/panopticon
        format: json                 # json (our body) or alertmanager (Prometheus Alertmanager's webhook body)
        headers: {Authorization: "Bearer ..."}   # optional
    defaults:                        # optional: for every rule that does not say
      window: 5m
      for: 2m
    rules:
      - name: checkout-p95
        type: latency                # latency | error_rate | request_rate | new_error_group | error_group_count
        service: checkout            # optional scope: service, environment, endpoint (endpoint needs service)
        environment: production
        percentile: p95              # latency: p50 | p90 | p95 | p99 (default p95)
        threshold: 800               # latency ms; error_rate 0..1; request_rate requests/minute (a floor);
                                     # error_group_count occurrences in the window; new_error_group: new groups
        min_requests: 20             # error_rate: fewer requests in the window never fire (default 10)
        fingerprint: 0123456789abcdef   # error_group_count: one group (default: the largest group of the scope)
        window: 5m                   # the range each evaluation reads: [t - window, t)
        for: 2m                      # how long the condition must hold before firing (0s: at once)
        severity: critical           # a label (default warning)
        summary: "Checkout is slow"  # optional text for people
        labels: {team: payments}     # optional, passed on to Alertmanager
        receivers: [ops]             # default: every receiver

A mistake stops start-up with one line naming the rule and the field (`rules_or_exit`), as a bad variable does.
Configuration, like `settings.py`, so it sits beside it: the Celery app (`worker.py`, which the bridge uses too)
checks the file without importing the query layer.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from panopticon.exceptions import ConfigError
from panopticon.model import FINGERPRINT_RE, FINGERPRINT_RULE
from panopticon.settings import Settings

RULE_TYPES = ("latency", "error_rate", "request_rate", "new_error_group", "error_group_count")
REQUEST_TYPES = ("latency", "error_rate", "request_rate")
ERROR_TYPES = ("new_error_group", "error_group_count")
FORMATS = ("json", "alertmanager")
PERCENTILES = ("p50", "p90", "p95", "p99")
WEBSOCKET = "websocket"  # the reserved target name of the `alert` event on the live stream
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
NAME_RULE = "must be 1-128 characters: letters, digits, '_', '.', ':', '-' (starting with a letter or digit)"
_DURATION = re.compile(r"(\d{1,9})(ms|s|m|h|d)\Z")
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MIN_WINDOW_MS = 10_000
MAX_WINDOW_MS = 86_400_000
RULE_KEYS = {"name", "type", "service", "environment", "endpoint", "percentile", "threshold", "min_requests",
             "fingerprint", "window", "for", "severity", "summary", "labels", "receivers"}
DEFAULT_KEYS = {"window", "for", "severity", "min_requests", "receivers"}
RECEIVER_KEYS = {"name", "url", "format", "headers"}


@dataclass(frozen=True)
class Receiver:
    name: str
    url: str
    format: str = "json"
    headers: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """What the API shows: never the headers' values (they may hold credentials)."""
        return {"name": self.name, "url": self.url, "format": self.format, "headers": [k for k, _ in self.headers]}


@dataclass(frozen=True)
class Rule:
    name: str
    type: str
    threshold: float
    window_ms: int
    for_ms: int = 0
    service: str | None = None
    environment: str | None = None
    endpoint: str | None = None
    percentile: str = "p95"
    min_requests: int = 10
    fingerprint: str | None = None
    severity: str = "warning"
    summary: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    receivers: tuple[str, ...] = ()

    @property
    def comparison(self) -> str:
        """`below` for a floor (request_rate), `above` for everything else."""
        return "below" if self.type == "request_rate" else "above"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "service": self.service, "environment": self.environment,
                "endpoint": self.endpoint, "percentile": self.percentile if self.type == "latency" else None,
                "threshold": self.threshold, "comparison": self.comparison,
                "min_requests": self.min_requests if self.type == "error_rate" else None,
                "fingerprint": self.fingerprint, "window": format_duration(self.window_ms),
                "for": format_duration(self.for_ms), "severity": self.severity, "summary": self.summary,
                "labels": dict(self.labels), "receivers": list(self.receivers)}


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    receivers: tuple[Receiver, ...] = ()
    source: str | None = None
    digest: str = ""  # of the file's bytes: which version of it the processes run
    by_receiver: dict[str, Receiver] = field(default_factory=dict, compare=False)

    def receiver(self, name: str) -> Receiver | None:
        return self.by_receiver.get(name)


def format_duration(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNITS[unit] == 0:
            return f"{ms // _UNITS[unit]}{unit}"
    return f"{ms}ms"


class _Problem(Exception):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")


def _duration(value: Any, where: str, *, minimum: int, maximum: int) -> int:
    match = _DURATION.match(str(value).strip().lower()) if isinstance(value, str | int) else None
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        match = _DURATION.match("0s")
    if not match:
        raise _Problem(where, f"expected a duration such as 30s, 5m or 1h, got {value!r}")
    ms = int(match.group(1)) * _UNITS[match.group(2)]
    if not minimum <= ms <= maximum:
        raise _Problem(where, f"must be between {format_duration(minimum) if minimum else '0s'} and "
                              f"{format_duration(maximum)}, got {value!r}")
    return ms


def _text(value: Any, where: str, max_chars: int = 256) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= max_chars:
        raise _Problem(where, f"expected text of 1-{max_chars} characters, got {value!r}")
    return value.strip()


def _number(value: Any, where: str, *, minimum: float = 0.0, maximum: float = 1e15, above: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _Problem(where, f"expected a number, got {value!r}")
    if (value <= minimum if above else value < minimum) or value > maximum:
        bound = f"above {minimum:g}" if above else f"at least {minimum:g}"
        raise _Problem(where, f"must be {bound} and at most {maximum:g}, got {value!r}")
    return float(value)


def _pairs(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise _Problem(where, f"expected a mapping of names to text, got {type(value).__name__}")
    out = []
    for key, item in value.items():
        if not isinstance(key, str) or not NAME_RE.match(key) or not isinstance(item, str | int | float) \
                or isinstance(item, bool):
            raise _Problem(where, f"{key!r}: names must be simple words and values text")
        out.append((key, str(item)))
    return tuple(sorted(out))


def _unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(str(k) for k in set(data) - allowed)
    if extra:
        raise _Problem(f"{where}{extra[0]}", f"unknown field (expected {', '.join(sorted(allowed))})")


def _receiver(data: Any, n: int) -> Receiver:
    if not isinstance(data, dict):
        raise _Problem(f"receivers[{n}]", "expected a mapping with name and url")
    name = data.get("name")
    label = f"receivers[{n}] ({name})" if isinstance(name, str) else f"receivers[{n}]"
    _unknown(data, RECEIVER_KEYS, f"{label}: ")
    if not isinstance(name, str) or not NAME_RE.match(name) or name == WEBSOCKET:
        raise _Problem(f"{label}: name", NAME_RULE + f" (and not {WEBSOCKET!r}, the live stream's)")
    url = data.get("url")
    if not isinstance(url, str) or not re.match(r"https?://[^\s/]+", url) or len(url) > 2048:
        raise _Problem(f"{label}: url", f"expected an http:// or https:// URL, got {url!r}")
    fmt = data.get("format", "json")
    if fmt not in FORMATS:
        raise _Problem(f"{label}: format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    headers = _pairs(data["headers"], f"{label}: headers") if "headers" in data else ()
    return Receiver(name, url, fmt, headers)


def _rule(data: Any, n: int, defaults: dict[str, Any], receivers: dict[str, Receiver]) -> Rule:
    if not isinstance(data, dict):
        raise _Problem(f"rules[{n}]", "expected a mapping with name, type and threshold")
    name = data.get("name")
    label = f"rules[{n}] ({name})" if isinstance(name, str) else f"rules[{n}]"
    _unknown(data, RULE_KEYS, f"{label}: ")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _Problem(f"{label}: name", NAME_RULE)
    merged = {**defaults, **data}
    kind = merged.get("type")
    if kind not in RULE_TYPES:
        raise _Problem(f"{label}: type", f"expected one of {', '.join(RULE_TYPES)}, got {kind!r}")
    scope = {key: _text(merged[key], f"{label}: {key}", 1024 if key == "endpoint" else 256)
             for key in ("service", "environment", "endpoint") if merged.get(key) is not None}
    if "endpoint" in scope and "service" not in scope:
        raise _Problem(f"{label}: endpoint", "needs a service")
    if "endpoint" in scope and kind in ERROR_TYPES:
        raise _Problem(f"{label}: endpoint", "error-group rules are scoped by service and environment only")
    if "threshold" in merged:
        threshold = _number(merged["threshold"], f"{label}: threshold",
                            maximum=1.0 if kind == "error_rate" else 1e15, above=kind in ("latency", "request_rate"))
    elif kind == "new_error_group":
        threshold = 0.0
    else:
        raise _Problem(f"{label}: threshold", "is required for this type")
    percentile = merged.get("percentile", "p95")
    if kind == "latency" and percentile not in PERCENTILES:
        raise _Problem(f"{label}: percentile", f"expected one of {', '.join(PERCENTILES)}, got {percentile!r}")
    if "percentile" in data and kind != "latency":
        raise _Problem(f"{label}: percentile", "only latency rules have one")
    min_requests = merged.get("min_requests", 10)
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or not 1 <= min_requests <= 10**9:
        raise _Problem(f"{label}: min_requests", f"expected a whole number of at least 1, got {min_requests!r}")
    fingerprint = merged.get("fingerprint")
    if fingerprint is not None and (kind != "error_group_count" or not isinstance(fingerprint, str)
                                    or not FINGERPRINT_RE.match(fingerprint)):
        raise _Problem(f"{label}: fingerprint", f"only error_group_count rules have one, and it {FINGERPRINT_RULE}")
    window = _duration(merged.get("window", "5m"), f"{label}: window", minimum=MIN_WINDOW_MS, maximum=MAX_WINDOW_MS)
    hold = _duration(merged.get("for", "0s"), f"{label}: for", minimum=0, maximum=MAX_WINDOW_MS)
    severity = _text(merged.get("severity", "warning"), f"{label}: severity", 64)
    summary = _text(merged["summary"], f"{label}: summary", 1024) if merged.get("summary") is not None else None
    labels = _pairs(merged["labels"], f"{label}: labels") if "labels" in merged else ()
    chosen = merged.get("receivers", list(receivers))
    if not isinstance(chosen, list) or not all(isinstance(r, str) for r in chosen):
        raise _Problem(f"{label}: receivers", "expected a list of receiver names")
    for receiver in chosen:
        if receiver not in receivers:
            raise _Problem(f"{label}: receivers", f"no receiver named {receiver!r} (known: "
                                                  f"{', '.join(receivers) or 'none'})")
    return Rule(name, kind, threshold, window, hold, scope.get("service"), scope.get("environment"),
                scope.get("endpoint"), percentile, min_requests, fingerprint, severity, summary, labels, tuple(chosen))


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """The rule set in `text` (YAML); ConfigError names the rule and the field of the first mistake."""
    try:
        return _parse(text, source)
    except _Problem as exc:
        raise ConfigError(f"ALERT_RULES_FILE={source}: {exc}") from None


def _parse(text: str, source: str) -> RuleSet:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        raise _Problem(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _Problem("file", "expected a mapping with `rules` (and `receivers`)")
    _unknown(data, {"rules", "receivers", "defaults"}, "")
    raw_receivers = data.get("receivers") or []
    if not isinstance(raw_receivers, list):
        raise _Problem("receivers", "expected a list")
    receivers: dict[str, Receiver] = {}
    for n, item in enumerate(raw_receivers):
        receiver = _receiver(item, n)
        if receiver.name in receivers:
            raise _Problem(f"receivers[{n}] ({receiver.name}): name", "is used twice")
        receivers[receiver.name] = receiver
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise _Problem("defaults", "expected a mapping")
    _unknown(defaults, DEFAULT_KEYS, "defaults: ")
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise _Problem("rules", "expected a list")
    rules: list[Rule] = []
    for n, item in enumerate(raw_rules):
        rule = _rule(item, n, defaults, receivers)
        if any(r.name == rule.name for r in rules):
            raise _Problem(f"rules[{n}] ({rule.name}): name", "is used twice")
        rules.append(rule)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return RuleSet(tuple(rules), tuple(receivers.values()), source, digest, receivers)


def load_rules(settings: Settings) -> RuleSet:
    """The rules of ALERT_RULES_FILE (none when it is empty); ConfigError says what is wrong."""
    path = settings.alert_rules_file
    if path is None:
        return RuleSet()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ALERT_RULES_FILE={path}: cannot be read: {exc}") from None
    return parse_rules(text, path)


def rules_or_exit(settings: Settings) -> RuleSet:
    """For process entry points: a bad rules file stops start-up with one line, as a bad variable does."""
    try:
        return load_rules(settings)
    except ConfigError as exc:
        print(f"panopticon: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
