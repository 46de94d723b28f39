"""`python -m panopticon.monitor`: Flower (the task monitor), started by the ports rule (the Procfile's `flower`).

Flower shows task arguments (raw log payloads) and can shut workers down, so it never listens beyond
loopback without a password: with FLOWER_BASIC_AUTH it binds FLOWER_BIND_HOST and asks for the
password; without it, it binds 127.0.0.1 whatever FLOWER_BIND_HOST says, and says so once. The
password reaches Flower through its own FLOWER_BASIC_AUTH variable, never on the command line (where
`ps` would show it); an explicit --address and --port win over any FLOWER_* variable Flower reads.
"""

from __future__ import annotations

import logging
import os
import sys

from panopticon.logs import setup_logging
from panopticon.settings import Settings, load_or_exit

log = logging.getLogger(__name__)


def flower_command(settings: Settings) -> tuple[list[str], dict[str, str], str | None]:
    """(argv, environment additions, the warning to log or None) for the Flower process."""
    protected = settings.flower_basic_auth is not None
    address = settings.flower_bind_host if protected else "127.0.0.1"
    argv = [sys.executable, "-m", "celery", "-A", "panopticon", "flower", f"--port={settings.flower_port}",
            f"--address={address}"]
    env = {"FLOWER_BASIC_AUTH": settings.flower_basic_auth} if settings.flower_basic_auth else {}
    warning = None
    if not protected:
        ignored = "" if settings.flower_bind_host == "127.0.0.1" else \
            f" (FLOWER_BIND_HOST={settings.flower_bind_host} is ignored without it)"
        warning = (f"FLOWER_BASIC_AUTH is empty: Flower listens on 127.0.0.1:{settings.flower_port} only{ignored}; "
                   "set FLOWER_BASIC_AUTH=user:password to open it to other hosts")
    return argv, env, warning


def main() -> None:
    settings = load_or_exit()
    setup_logging(settings, "flower")
    argv, extra, warning = flower_command(settings)
    if warning:
        log.warning(warning)
    # The child gets this process's environment, plus the password read from .env files if it came from there.
    os.execve(argv[0], argv, {**os.environ, **extra})


if __name__ == "__main__":
    main()
