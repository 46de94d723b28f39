"""WSGI entry points: `gunicorn wsgi:app` serves the API, `gunicorn -k gevent wsgi:ws_app` the error-log
WebSocket, `gunicorn -c python:panopticon.otlp.gunicorn wsgi:otlp_app` the OTLP receiver; `flask <command>`
finds the CLI here."""

from panopticon.api import create_app
from panopticon.logs import setup_logging
from panopticon.settings import load_or_exit

settings = load_or_exit()
setup_logging(settings, "web")
app = create_app(settings)


def __getattr__(name: str):
    # Built on first access only, so the `web` process never builds (or subscribes for) the ws app.
    if name == "ws_app":
        from panopticon.api.ws import create_ws_app

        setup_logging(settings, "ws")
        globals()["ws_app"] = built = create_ws_app(settings)
        return built
    if name == "otlp_app":
        from panopticon.otlp import create_otlp_app

        setup_logging(settings, "otlp")
        globals()["otlp_app"] = otlp = create_otlp_app(settings)
        return otlp
    raise AttributeError(name)
