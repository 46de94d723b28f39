"""WSGI entry point: `gunicorn wsgi:app` serves the API; `flask <command>` finds the CLI here."""

from panopticon.api import create_app
from panopticon.logs import setup_logging
from panopticon.settings import load_or_exit

settings = load_or_exit()
setup_logging(settings, "web")
app = create_app(settings)
