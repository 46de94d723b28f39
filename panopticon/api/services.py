"""The resources one app instance uses (search store, Redis), built on first use and kept on the app."""

from __future__ import annotations

from functools import cached_property

import redis
from flask import Flask

from panopticon.settings import Settings
from panopticon.storage import SearchStore, open_store


class AppServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> SearchStore:
        return open_store(self.settings)

    @cached_property
    def redis(self) -> redis.Redis | None:
        if not self.settings.cache_enabled:
            return None
        return redis.Redis.from_url(self.settings.redis_url(), socket_timeout=2, socket_connect_timeout=2)

    def readiness(self) -> dict[str, bool]:
        checks = {"search": self.store.ping()}
        if self.redis is not None:
            try:
                checks["redis"] = bool(self.redis.ping())
            except redis.RedisError:
                checks["redis"] = False
        return checks


def services(app: Flask) -> AppServices:
    found = app.extensions.get("panopticon")
    if found is None:
        found = app.extensions["panopticon"] = AppServices(app.config["PANOPTICON_SETTINGS"])
    return found
