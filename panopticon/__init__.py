"""Panopticon: an APM backend. Kafka in, Elasticsearch/OpenSearch in the middle, HTTP + WebSocket out."""

from typing import Any


def __getattr__(name: str) -> Any:
    # `celery -A panopticon` looks for `panopticon.celery`; building it lazily keeps imports free of
    # side effects (no settings read, no connections) until a process really wants the app.
    if name in ("celery", "app"):
        from panopticon.worker import celery_app

        return celery_app()
    raise AttributeError(name)
