"""Rollup documents of `metrics-apm`: their ids, their index, and the conversion to and from `Aggregate`.

One document holds the requests of one (tier, scope, service, environment, endpoint, window): counts,
duration sum/min/max, the log-bucket histogram of `histogram.py` (mergeable, so any range is exact up
to the histogram's stated error) and exemplar trace ids. Its id is a hash of that key, so rolling the
same window again overwrites the same document instead of adding one.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from panopticon.flow import METRICS
from panopticon.model.histogram import Histogram
from panopticon.model.times import iso_ms
from panopticon.rollup.aggregate import Aggregate
from panopticon.settings import Settings

HOURLY = "1h"
SERVICE = "service"  # the per-service total over all endpoints
ENDPOINT = "endpoint"


def minute_tier(window_minutes: int) -> str:
    """Name of the finest tier ("1m" for one-minute windows)."""
    return f"{window_minutes}m"


@dataclass(frozen=True)
class Key:
    """What one rollup document is about; `endpoint` is None for the per-service total."""

    service: str
    environment: str
    endpoint: str | None = None

    @property
    def scope(self) -> str:
        return SERVICE if self.endpoint is None else ENDPOINT

    def sort_key(self) -> tuple[str, str, str]:
        """A total order (None sorts first), so documents are built in the same order on every roll."""
        return self.service, self.environment, self.endpoint or ""

    def service_total(self) -> Key:
        return Key(self.service, self.environment)


@dataclass
class Exemplars:
    """Trace ids worth opening: the slowest request, and the slowest error (each may be missing)."""

    slowest: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def merge(self, other: Exemplars) -> None:
        self.slowest = _slower(self.slowest, other.slowest)
        self.error = _slower(self.error, other.error)

    def as_dict(self) -> dict[str, Any]:
        return {name: value for name, value in (("slowest", self.slowest), ("error", self.error)) if value}


def _slower(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The exemplar with the longer duration; ties go to the smaller span id, so merges are deterministic."""
    if a is None or b is None:
        return a or b
    return min(a, b, key=lambda e: (-e["duration_ms"], e["span_id"]))


@dataclass
class Row:
    """An Aggregate with its exemplars: what one document stores."""

    aggregate: Aggregate = field(default_factory=Aggregate)
    exemplars: Exemplars = field(default_factory=Exemplars)

    def merge(self, other: Row) -> None:
        self.aggregate.merge(other.aggregate)
        self.exemplars.merge(other.exemplars)


def doc_id(tier: str, key: Key, window_ms: int) -> str:
    """Deterministic id: the same key and window always name the same document."""
    text = "\x1f".join((tier, key.scope, key.service, key.environment, key.endpoint or "", str(window_ms)))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def metrics_index(settings: Settings, window_ms: int, family: str = METRICS) -> str:
    """The monthly index a window's documents live in, from the window's own time (never from now).

    `family`: metrics-apm (request statistics) or edges-apm (the service map), both monthly plain indices.
    """
    return settings.data_stream(f"{family}-{time.strftime('%Y.%m', time.gmtime(window_ms / 1000))}")


def metrics_indices(settings: Settings, start_ms: int, end_ms: int, family: str = METRICS) -> str:
    """Comma-separated monthly indices of `family` (metrics-apm, errors-apm) covering [start_ms, end_ms): reads
    touch only the months they need."""
    names: list[str] = []
    year, month = time.gmtime(start_ms / 1000)[:2]
    last = time.gmtime(max(start_ms, end_ms - 1) / 1000)[:2]
    while (year, month) <= last:
        names.append(settings.data_stream(f"{family}-{year:04d}.{month:02d}"))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return ",".join(names)


def metrics_pattern(settings: Settings) -> str:
    return settings.data_stream(f"{METRICS}-*")


def to_document(tier: str, key: Key, window_ms: int, row: Row, now_ms: int) -> dict[str, Any]:
    aggregate = row.aggregate
    indexes, counts = aggregate.histogram.to_arrays()
    return {
        "@timestamp": iso_ms(window_ms),
        "key": doc_id(tier, key, window_ms),
        "tier": tier,
        "scope": key.scope,
        "service_name": key.service,
        "environment": key.environment,
        "endpoint": key.endpoint,
        "requests": aggregate.requests,
        "errors": aggregate.errors,
        # Sums are rounded so float noise from the engine's summation order cannot make two rolls differ.
        "duration_sum": round(aggregate.duration_sum, 6),
        "duration_min": aggregate.duration_min,
        "duration_max": aggregate.duration_max,
        "histogram": {"indexes": indexes, "counts": counts},
        "exemplars": row.exemplars.as_dict(),
        "updated_at": iso_ms(now_ms),
    }


def key_of(document: dict[str, Any]) -> Key:
    return Key(document["service_name"], document["environment"], document.get("endpoint"))


def row_of(document: dict[str, Any]) -> Row:
    """The Row stored in a document (inverse of to_document)."""
    histogram = document.get("histogram") or {}
    aggregate = Aggregate(
        requests=int(document["requests"]),
        errors=int(document["errors"]),
        duration_sum=float(document["duration_sum"]),
        duration_min=document.get("duration_min"),
        duration_max=document.get("duration_max"),
        histogram=Histogram.from_arrays(histogram.get("indexes", []), histogram.get("counts", [])),
    )
    exemplars = document.get("exemplars") or {}
    return Row(aggregate, Exemplars(exemplars.get("slowest"), exemplars.get("error")))


def aggregate_of(document: dict[str, Any]) -> Aggregate:
    return row_of(document).aggregate
