"""Celery tasks of the rollup: thin wrappers over `panopticon.rollup.job`, where the work and the tests are.

`rollup_due` is what beat sends every ROLLUP_INTERVAL_SECONDS; `rollup_window` rolls one window on
request (operators, scripts); `rollup_retention` drops monthly metrics indices past retention. All are
idempotent (overwrites by deterministic id; progress is saved with a compare-and-set), so `acks_late` is safe
and a task redelivered after a worker crash simply does the same work again.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import current_app, shared_task

from panopticon import flow
from panopticon.model.times import now_ms, parse_time
from panopticon.rollup import errors, job
from panopticon.rollup.kinds import KINDS
from panopticon.rollup.windows import floor_to
from panopticon.settings import Settings
from panopticon.storage import SearchStore, open_store

log = logging.getLogger(__name__)

# A catch-up run is bounded by ROLLUP_MAX_WINDOWS_PER_RUN; these limits only stop a run that hangs.
SOFT_LIMIT_SECONDS = 600
HARD_LIMIT_SECONDS = 660


@cache
def _store() -> SearchStore:
    """One store (connection pool) per worker process, with templates in place."""
    settings: Settings = current_app.conf.panopticon_settings
    return open_store(settings, setup=True)


@shared_task(name=flow.ROLLUP_DUE, acks_late=True, soft_time_limit=SOFT_LIMIT_SECONDS, time_limit=HARD_LIMIT_SECONDS)
def rollup_due() -> dict[str, Any]:
    """Every kind of rollup, one after the other; a kind that fails does not hold the others back."""
    store, results, failures = _store(), {}, []
    for kind in KINDS:
        try:
            results[kind.name] = job.roll_due(store, kind=kind).as_dict()
        except Exception as exc:  # re-raised below, after the other kinds had their run
            failures.append(exc)
            log.warning("rollup run of %s failed: %s", kind.name, exc)
    if failures:
        raise failures[0]
    return results


@shared_task(name=flow.ROLLUP_WINDOW, acks_late=True, soft_time_limit=SOFT_LIMIT_SECONDS, time_limit=HARD_LIMIT_SECONDS)
def rollup_window(minute: str | int | float) -> dict[str, Any]:
    """Roll up the window holding `minute` (ISO 8601 or epoch ms), and merge its hour."""
    at = parse_time(minute)
    if at is None:
        raise ValueError(f"minute: expected an ISO 8601 time or epoch milliseconds, got {minute!r}")
    store = _store()
    width = store.settings.rollup_bucket_minutes * 60_000
    result = job.RunResult()
    job.roll_windows(store, [floor_to(int(at), width)], now_ms(), result)
    return result.as_dict()


@shared_task(name=flow.ROLLUP_RETENTION, acks_late=True)
def rollup_retention() -> list[str]:
    store = _store()
    return [*job.drop_expired(store), *errors.drop_expired(store)]
