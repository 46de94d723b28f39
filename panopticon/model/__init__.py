"""The data model's vocabulary, at the bottom of the import graph: every other module takes these from here.

What a level, a kind, a status and an id are; what makes a span a *request*, what its *endpoint* is and
when it is an *error*. The rules are written once so ingest (which computes them into every stored
document), the query path, the error stream and the compatibility APIs cannot disagree. Times are in
`panopticon.model.times`, the percentile math in `panopticon.model.histogram`.
"""

from __future__ import annotations

import re

# Log levels and their order; the number is stored (`level_num`) so "at least ERROR" is a range query.
LEVELS: dict[str, int] = {"TRACE": 1, "DEBUG": 2, "INFO": 3, "WARN": 4, "ERROR": 5, "FATAL": 6}
LEVEL_ALIASES: dict[str, str] = {"WARNING": "WARN"}
# Levels copied to the error topic and pushed to the live stream.
ERROR_LEVELS: tuple[str, ...] = ("ERROR", "FATAL")
KINDS: tuple[str, ...] = ("SERVER", "CLIENT", "INTERNAL", "PRODUCER", "CONSUMER")
STATUSES: tuple[str, ...] = ("OK", "ERROR", "UNSET")

# Trace and span ids: 1-128 printable ASCII characters without spaces or ':'. That keeps the span document
# id `trace_id:span_id` unambiguous and well under the engine's 512-byte `_id` limit.
ID_MAX_CHARS = 128
ID_PATTERN = rf"[!-9;-~]{{1,{ID_MAX_CHARS}}}"
ID_RULE = f"must be 1-{ID_MAX_CHARS} printable ASCII characters, no spaces or ':'"
ID_RE = re.compile(ID_PATTERN + r"\Z")
# An error group's fingerprint (panopticon/processing/fingerprint.py): 16 lowercase hex characters.
FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}\Z")
FINGERPRINT_RULE = "must be a fingerprint: 16 lowercase hex characters"
# The states of an alert rule (panopticon/alerting/state.py): a notification is sent on entering firing or resolved.
ALERT_STATES: tuple[str, ...] = ("inactive", "pending", "firing", "resolved")


def is_request(kind: str | None, parent_span_id: str | None) -> bool:
    """A request is a SERVER span, or a root span when the producer gave no kind."""
    return kind == "SERVER" or (kind is None and parent_span_id is None)


def endpoint_of(route: str | None, name: str) -> str:
    """A request's endpoint: its `http.route` when present, else the span name."""
    return route or name


def is_error_span(status: str, http_status_code: int | None) -> bool:
    """A span is an error when its status is ERROR or its HTTP status is 5xx."""
    return status == "ERROR" or (http_status_code is not None and http_status_code >= 500)


def is_error_level(level: str | None) -> bool:
    """ERROR and FATAL logs are the ones forwarded to the error topic and the live stream."""
    return level in ERROR_LEVELS


def span_doc_id(trace_id: str, span_id: str) -> str:
    """The document id of a span: unique per trace, the same on every delivery."""
    return f"{trace_id}:{span_id}"
