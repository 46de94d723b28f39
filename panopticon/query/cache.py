"""Short-lived Redis cache of aggregated answers (metrics, services, endpoints).

A dashboard refreshes the same panels every few seconds with `end=now`. The routes round the time
bounds out to whole buckets before asking, so refreshes within one bucket ask the very same question,
and the key is built from that rounded question: they hit the cache. The TTL
(METRICS_CACHE_TTL_SECONDS) bounds how stale the newest, still-filling bucket can be.

The cache is an optimisation, never a dependency: with REDIS_HOST unset it is off, and when Redis
fails the answer is computed (and a warning logged) as if there were no cache.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

import orjson
import redis

from panopticon import telemetry

log = logging.getLogger(__name__)

_RESULT_LABELS = {"hits": "hit", "misses": "miss", "errors": "error"}
KEY_VERSION = "v1"  # bump when the shape of a cached answer changes


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0
    _lock: Lock = field(default_factory=Lock, repr=False)

    def count(self, outcome: str) -> None:
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
        telemetry.CACHE_REQUESTS.labels(_RESULT_LABELS[outcome]).inc()


class AnswerCache:
    def __init__(self, client: redis.Redis | None, prefix: str, ttl_seconds: int,
                 rollup_ttl_seconds: int | None = None) -> None:
        self.client = client if ttl_seconds > 0 else None
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.rollup_ttl_seconds = ttl_seconds if rollup_ttl_seconds is None else rollup_ttl_seconds
        self.stats = CacheStats()

    def ttl_for(self, answer: dict[str, Any]) -> int:
        """An answer read only from rollups changes only on re-rolls: it may live longer
        (ROLLUP_CACHE_TTL_SECONDS); anything with raw data keeps the short METRICS_CACHE_TTL_SECONDS."""
        sources = answer.get("sources") or {}
        # An answer made of several parts (the service map: edges, and its nodes' figures) says so per part.
        parts = [sources, *(part for part in sources.values() if isinstance(part, dict) and "raw" in part)]
        if all(part.get("rollup") and not part.get("raw") for part in parts):
            return self.rollup_ttl_seconds
        return self.ttl_seconds

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def key(self, kind: str, question: dict[str, Any]) -> str:
        """The key of one question: its kind and every parameter, in a canonical order, hashed."""
        digest = hashlib.sha256(orjson.dumps(question, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
        return f"{self.prefix}{KEY_VERSION}:{kind}:{digest}"

    def get_or_compute(self, kind: str, question: dict[str, Any],
                       compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], str]:
        """(answer, "hit" | "miss" | "off"): the cached answer, or a fresh one that is then stored."""
        if self.client is None:
            return compute(), "off"
        key = self.key(kind, question)
        cached = self._read(key)
        if cached is not None:
            self.stats.count("hits")
            return cached, "hit"
        self.stats.count("misses")
        answer = compute()
        self._write(key, answer)
        return answer, "miss"

    def _read(self, key: str) -> dict[str, Any] | None:
        assert self.client is not None  # only called with the cache on
        try:
            raw = self.client.get(key)
            answer: dict[str, Any] | None = orjson.loads(raw) if raw is not None else None  # type: ignore[arg-type]
            return answer  # (a sync client: get() returns bytes, not an awaitable)
        except (redis.RedisError, orjson.JSONDecodeError) as exc:
            self.stats.count("errors")
            log.warning("query cache read failed, answering without it: %s", exc)
            return None

    def _write(self, key: str, answer: dict[str, Any]) -> None:
        assert self.client is not None  # only called with the cache on
        try:
            self.client.set(key, orjson.dumps(answer), ex=max(1, self.ttl_for(answer)))
        except redis.RedisError as exc:
            self.stats.count("errors")
            log.warning("query cache write failed: %s", exc)
