"""The Celery application: `celery -A panopticon worker` / `beat` find it through `panopticon.celery`."""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery
from celery.signals import setup_logging

from panopticon import flow
from panopticon.alert_rules import RuleSet, rules_or_exit
from panopticon.settings import Settings, load_or_exit

ROLLUP_VISIBILITY_S = 720


def create_celery(settings: Settings, task_modules: tuple[str, ...] = flow.TASK_MODULES,
                  rules: RuleSet | None = None) -> Celery:
    """The app; the worker imports every one of `task_modules` at start and fails to start if one is missing.
    The alert rules are read (and checked) here: a bad ALERT_RULES_FILE stops every Celery process with one line."""
    rules = rules if rules is not None else rules_or_exit(settings)
    app = Celery("panopticon", include=list(task_modules))
    app.config_from_object("celeryconfig")
    timeout = settings.bulk_task_timeout_seconds
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        task_default_queue=settings.celery_queue,
        # Scheduled work has its queue and its own worker (`rollup` in the Procfile): a long catch-up can
        # never hold the ingest worker's slots, and ingest never delays a rollup run.
        task_routes={**{name: {"queue": settings.celery_rollup_queue} for name in flow.ROLLUP_TASKS},
                     # Alerts have their own queue and worker (`alerts`): evaluation is never late behind a catch-up.
                     **{name: {"queue": settings.celery_alerts_queue} for name in flow.ALERT_TASKS}},
        # A task is cut off before the bridge gives up on it (BULK_TASK_TIMEOUT_SECONDS) and hands the
        # batch off again, so two copies of one batch rarely run at once (harmless if they do).
        task_soft_time_limit=settings.bulk_task_soft_limit_seconds,
        task_time_limit=settings.bulk_task_time_limit_seconds,
        # An unacked task of a dead worker returns to the queue after this. Longer than any task may run
        # (bulk_index's hard limit, and the rollup tasks' 660 s), or a running task would be delivered twice.
        broker_transport_options={"visibility_timeout": max(int(timeout * 2), ROLLUP_VISIBILITY_S)},
        result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
        panopticon_settings=settings,
        panopticon_rules=rules,
        beat_schedule=beat_schedule(settings, rules),
    )
    return app


def beat_schedule(settings: Settings, rules: RuleSet | None = None) -> dict[str, dict[str, Any]]:
    """What `celery -A panopticon beat` sends. `expires` drops a run that waited in the queue so long
    that the next one is already due (the next run does the same work, and more)."""
    schedule: dict[str, dict[str, Any]] = {}
    if settings.rollup_enabled:
        every = settings.rollup_interval_seconds
        schedule["rollup-due"] = {"task": flow.ROLLUP_DUE, "schedule": every,
                                  "options": {"expires": max(1.0, every * 0.9), "queue": settings.celery_rollup_queue}}
        schedule["rollup-retention"] = {"task": flow.ROLLUP_RETENTION, "schedule": 3600.0,
                                        "options": {"expires": 3000, "queue": settings.celery_rollup_queue}}
    if rules is not None and rules.rules:
        every = settings.alert_interval_seconds
        schedule["alerts-due"] = {"task": flow.ALERTS_DUE, "schedule": every,
                                  "options": {"expires": max(1.0, every * 0.9), "queue": settings.celery_alerts_queue}}
    return schedule


@cache
def celery_app() -> Celery:
    """The process-wide app, built on first use from the environment (never at import time)."""
    return create_celery(load_or_exit())


@setup_logging.connect
def _use_project_logging(**_kwargs: Any) -> None:
    """Connected, this signal stops Celery from configuring logging its own way."""
    from panopticon.logs import setup_logging as setup

    setup(celery_app().conf.panopticon_settings, "celery")
