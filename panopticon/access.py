"""Who may reach a port: the bearer-token check and the loopback test, shared by every process.

The rule (OPERATIONS.md, "Ports"): every port a process opens is either behind API_AUTH_TOKENS or bound
to 127.0.0.1, unless the operator configures otherwise. `web` and `ws` check tokens in Flask, the small
metrics servers of the bridge and the relay in `panopticon.telemetry`; all of them use `token_ok`.
"""

from __future__ import annotations

import hmac
import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def token_ok(header: str | None, tokens: tuple[str, ...]) -> bool:
    """True when `header` is `Bearer <one of tokens>` (case-insensitive scheme, constant-time compare)."""
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = token.strip().encode()
    matched = False
    for candidate in tokens:  # no early exit: the time taken does not say which token was close
        matched |= hmac.compare_digest(given, candidate.encode())
    return matched


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not), `localhost` and its subdomains (RFC 6761 reserves them)."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(process: str, variable: str, host: str, tokens: tuple[str, ...]) -> str | None:
    """The one line a process logs at start when it listens beyond loopback with no token required."""
    if is_loopback(host) or tokens:
        return None
    return (f"{process} listens on {host} ({variable}) and API_AUTH_TOKENS is empty: anyone who can reach this "
            "host can read it; set API_AUTH_TOKENS, or bind to 127.0.0.1")
