"""Error fingerprints: which ERROR/FATAL logs are "the same error". Pure code, computed once at ingest.

A fingerprint is a hash of four parts, so two logs group together exactly when all four agree:

1. the service (`service_name`);
2. the exception type (`exception.type`, `error.type`, ... in the attributes; else a leading `SomeError:` of the
   message), or, when there is none, the logger (`logger`, `logger.name`, `log.logger`);
3. the message with its variable parts masked (`mask_message`): quoted values, URLs' ids and query strings,
   e-mail addresses, UUIDs, times and dates, IP addresses, ids in file paths, hex numbers, long opaque
   tokens, and numbers (with their units). A leading `<type>: ` equal to the exception type is dropped, so
   an OTLP `exception` event and a JSON log of the same exception agree;
4. when a stack trace is present (`exception.stacktrace`, `error.stack`, `stacktrace`, ...), its top in-app
   frame (`top_frame`): the innermost frame that is not in a library (site-packages, node_modules, java.*,
   the Go runtime, ...), as `<last two path segments>:<function>`, without line numbers, which change with
   every deploy.

Only the first MAX_MESSAGE_CHARS characters of a message take part: two messages that differ only after
that group together. The README ("Error groups") shows the rule with examples; tests/unit/processing/
test_fingerprint.py holds the table of real-looking messages it is checked on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from panopticon.model import FINGERPRINT_RE

__all__ = ["FINGERPRINT_RE", "ErrorIdentity", "fingerprint", "identify", "mask_message", "top_frame"]

VERSION = "v1"  # part of the hash: a change of the rule gives new fingerprints instead of mixing old and new
MAX_MESSAGE_CHARS = 2000
MAX_STACK_CHARS = 32768
MAX_TYPE_CHARS = 256

TYPE_KEYS = ("exception.type", "error.type", "exception.class", "error.kind", "exception_type", "error_type")
LOGGER_KEYS = ("logger", "logger.name", "log.logger", "logger_name", "code.namespace")
STACK_KEYS = ("exception.stacktrace", "error.stack", "error.stack_trace", "exception.stack", "stacktrace",
              "stack_trace", "stack")
ENDPOINT_KEYS = ("endpoint", "http.route", "route")


@dataclass(frozen=True, slots=True)
class ErrorIdentity:
    """What ingest stores about an error log: its group, the type and frame that made it, and its endpoint."""

    fingerprint: str
    error_type: str | None
    frame: str | None
    endpoint: str | None


# --- masking ------------------------------------------------------------------------------------------
_QUOTED = (
    (re.compile(r'"[^"\n]{0,500}"'), '"<str>"'),
    # A quote only opens at a word boundary: the apostrophe of "can't" is not a quoted value.
    (re.compile(r"(?<![\w'])'[^'\n]{0,500}'(?!\w)"), "'<str>'"),
    (re.compile(r"`[^`\n]{0,500}`"), "`<str>`"),
)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s\"'<>()\[\]{}]+")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_DATETIME = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
                       r"(?![\w])|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b")
_PATH = re.compile(r"(?<![\w:/.])(?:/[\w.@%+~-]+){2,}/?")
_HEX = re.compile(r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b")
_TOKEN = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{16,}(?![\w-])")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?:[a-zA-Zµ%]{1,3})?(?!\w)(?!\.\d)")
_SPACES = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+")
_LINE_SUFFIX = re.compile(r"(?::\d+)+$")


def _segment(segment: str) -> str:
    """A path segment that holds an id becomes <id>: all digits, or digits in six characters or more (`acme-42`,
    `8f3k2j`), or 24 characters or more. `v1` and `api2` stay: they name a version, not a record."""
    digits = sum(c.isdigit() for c in segment)
    if digits and (digits == len(segment) or len(segment) >= 6) or len(segment) >= 24:
        return "<id>"
    return segment


def _mask_path(path: str) -> str:
    return "/".join(_segment(part) if part else part for part in path.split("/"))


def _mask_url(match: re.Match[str]) -> str:
    """scheme://host/path with ids masked; the query string and fragment say only that they were there."""
    text = match.group(0).rstrip(".,;:!?")
    tail = match.group(0)[len(text):]
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError:
        return "<url>" + tail
    if _IPV4.fullmatch(host) or ":" in host:
        host = "<ip>"
    masked = f"{parts.scheme}://{host}{_mask_path(parts.path)}"
    if parts.query:
        masked += "?<query>"
    return masked + tail


def mask_message(message: str) -> str:
    """`message` with its variable parts masked (see the module docstring), whitespace collapsed."""
    text = message[:MAX_MESSAGE_CHARS]
    for pattern, placeholder in _QUOTED:
        text = pattern.sub(placeholder, text)
    text = _URL.sub(_mask_url, text)
    text = _EMAIL.sub("<email>", text)
    text = _UUID.sub("<uuid>", text)
    text = _DATETIME.sub("<time>", text)
    text = _IPV4.sub("<ip>", text)
    text = _PATH.sub(lambda m: _mask_path(m.group(0)), text)
    text = _HEX.sub("<hex>", text)
    text = _TOKEN.sub("<id>", text)
    text = _NUMBER.sub("<num>", text)
    return _SPACES.sub(" ", text).strip()


# --- stack traces -----------------------------------------------------------------------------------
# Each language's frame line; `innermost_first` says where the frame that raised is.
_PYTHON = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+, in (?P<func>\S+)', re.MULTILINE)
_JAVA = re.compile(r"^\s*at (?P<func>[\w$.<>/]+)\((?P<file>[^)]*)\)", re.MULTILINE)
_NODE = re.compile(r"^\s*at (?:(?:async )?(?P<func>[^\s(]+) \()?(?P<file>[^\s()]+?):\d+(?::\d+)?\)?\s*$",
                   re.MULTILINE)
_GO = re.compile(r"^(?P<func>[\w./*()\-\[\]]+)\(.*\)\n\t(?P<file>\S+\.go):\d+", re.MULTILINE)
_RUBY = re.compile(r"^\s*(?:from )?(?P<file>[^\s:]+\.rb):\d+:in [`'](?P<func>[^']+)'", re.MULTILINE)

_LIBRARY_FILES = ("site-packages", "dist-packages", "/lib/python", "<frozen", "node_modules", "node:", "internal/",
                  "/usr/local/go/src", "/usr/lib/go", "/go/pkg/mod", "/gems/", "/vendor/", "/ruby/")
_LIBRARY_FUNCS = ("java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "kotlinx.", "scala.",
                  "org.springframework.",
                  "org.apache.", "org.hibernate.", "io.netty.", "reactor.", "akka.", "runtime.", "net/http.")


@dataclass(frozen=True, slots=True)
class _Frame:
    file: str
    func: str

    @property
    def in_app(self) -> bool:
        return not (any(part in self.file for part in _LIBRARY_FILES) or self.func.startswith(_LIBRARY_FUNCS))

    def name(self) -> str:
        path = _LINE_SUFFIX.sub("", self.file.replace("\\", "/"))
        tail = "/".join(path.split("/")[-2:])
        func = _DIGITS.sub("<n>", self.func)
        return f"{_mask_path(tail)}:{func}"


def _frames(stack: str) -> list[_Frame]:
    """Frames innermost first, in the first language whose frame lines the text holds."""
    for pattern, innermost_first in ((_PYTHON, False), (_JAVA, True), (_GO, True), (_RUBY, True), (_NODE, True)):
        found = [_Frame(m.group("file"), m.group("func") or "<anonymous>") for m in pattern.finditer(stack)]
        if found:
            return found if innermost_first else found[::-1]
    return []


def top_frame(stack: str) -> str | None:
    """The innermost in-app frame of a stack trace (the innermost frame when every one is a library's)."""
    frames = _frames(stack[:MAX_STACK_CHARS])
    if not frames:
        return None
    return next((f for f in frames if f.in_app), frames[0]).name()


# --- the parts and the hash -------------------------------------------------------------------------
_TYPE_PREFIX = re.compile(r"^(?P<type>[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)*(?:Error|Exception|Fault|Panic))"
                          r"(?::|\s*$)")


def _attribute(attributes: dict[str, Any], keys: Iterable[str]) -> str | None:
    """The first of `keys` in the attributes, flat (`"exception.type"`) or nested (`{"exception": {"type"}}`)."""
    for key in keys:
        value: Any = attributes.get(key)
        if value is None and "." in key:
            value = attributes
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def fingerprint(service: str, kind: str | None, masked: str, frame: str | None) -> str:
    """16 hex characters (64 bits) of the four parts."""
    text = "\x1f".join((VERSION, service, kind or "", masked, frame or ""))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def identify(service: str, message: str, attributes: dict[str, Any] | None,
             endpoint: str | None = None) -> ErrorIdentity:
    """The fingerprint of one error log, and the type, frame and endpoint that go with it."""
    attributes = attributes if isinstance(attributes, dict) else {}
    error_type = _attribute(attributes, TYPE_KEYS)
    if error_type is None and (found := _TYPE_PREFIX.match(message)):
        error_type = found.group("type")
    error_type = error_type[:MAX_TYPE_CHARS] if error_type else None
    kind = error_type or _attribute(attributes, LOGGER_KEYS)
    text = message
    if error_type and text.startswith(f"{error_type}:"):
        text = text[len(error_type) + 1:]
    stack = _attribute(attributes, STACK_KEYS)
    frame = top_frame(stack) if stack else None
    endpoint = endpoint or _attribute(attributes, ENDPOINT_KEYS)
    return ErrorIdentity(fingerprint(service, kind, mask_message(text), frame), error_type, frame,
                         endpoint[:1024] if endpoint else None)
