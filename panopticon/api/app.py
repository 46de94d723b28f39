"""`create_app(settings)`: blueprints, error envelope, health routes and CLI commands."""

from __future__ import annotations

from flask import Flask

from panopticon.api import health
from panopticon.cli import register_commands
from panopticon.settings import Settings, load_or_exit


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_or_exit()
    app = Flask("panopticon")
    app.config["PANOPTICON_SETTINGS"] = settings
    app.register_blueprint(health.blueprint)
    register_commands(app)
    return app
