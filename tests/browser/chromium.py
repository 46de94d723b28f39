"""Debian's Chromium driven by Playwright: the one place for the launch flags (tests and `bench` use it).

Playwright's own browser download cannot work here (nothing but package registries is reachable), so
Playwright drives `/usr/bin/chromium` from Debian's `chromium` package (`make test` installs it). The
background-networking flags matter: without them Chromium keeps trying its own services and this
machine's closed network refuses its connections.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1440, "height": 900}


def missing() -> str | None:
    """Why the browser cannot start, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install Debian's chromium package (`make test` does: apt-get install chromium)"
    return None


@contextmanager
def browser_context() -> Iterator[BrowserContext]:
    """A headless Chromium with a new, empty profile (removed afterwards)."""
    profile = tempfile.mkdtemp(prefix="panopticon-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=FLAGS, viewport=VIEWPORT)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
