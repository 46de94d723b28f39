"""The HTTP API (Flask): `create_app(settings)` builds it; `wsgi.py` serves it."""

from panopticon.api.app import create_app

__all__ = ["create_app"]
