"""WSGI entry points: `gunicorn wsgi:app` serves the API, `gunicorn -c python:panopticon.errorstream.gunicorn
wsgi:ws_app` the error-log WebSocket, `gunicorn -c python:panopticon.otlp.gunicorn wsgi:otlp_app` the OTLP
receiver; `flask <command>` finds the CLI here."""

import contextlib
import logging
from collections.abc import Iterator

from panopticon.access import exposure_warning
from panopticon.settings import load_or_exit

# gunicorn boots a worker again and again when it exits with any other code; with 3 (its WORKER_BOOT_ERROR) the
# whole server stops, so a configuration error is one line and an exit, not a loop.
BOOT_ERROR = 3


@contextlib.contextmanager
def _stop_on_config_error() -> Iterator[None]:
    try:
        yield
    except SystemExit as exc:
        raise SystemExit(BOOT_ERROR if exc.code == 2 else exc.code) from None


with _stop_on_config_error():
    settings = load_or_exit()


def _warn_if_exposed(process: str, variable: str, host: str) -> None:
    """The Procfile binds API_BIND_HOST / WS_BIND_HOST; beyond loopback without tokens, say so once."""
    warning = exposure_warning(process, variable, host, settings.api_auth_tokens)
    if warning:
        logging.getLogger("panopticon.access").warning(warning)


def __getattr__(name: str):
    # Each app is built on first access only, so the `web` process never builds (or subscribes for) the
    # ws app, and the `ws` process never builds the API.
    from panopticon.logs import setup_logging

    if name == "app":
        from panopticon.api import create_app

        setup_logging(settings, "web")
        _warn_if_exposed("web", "API_BIND_HOST", settings.api_bind_host)
        with _stop_on_config_error():  # a bad ALERT_RULES_FILE
            globals()["app"] = built = create_app(settings)
        return built
    if name == "ws_app":
        from panopticon.api.ws import create_ws_app

        setup_logging(settings, "ws")
        _warn_if_exposed("ws", "WS_BIND_HOST", settings.ws_bind_host)
        globals()["ws_app"] = built = create_ws_app(settings)
        return built
    if name == "otlp_app":
        from panopticon.otlp import create_otlp_app

        setup_logging(settings, "otlp")
        globals()["otlp_app"] = otlp = create_otlp_app(settings)
        return otlp
    raise AttributeError(name)
