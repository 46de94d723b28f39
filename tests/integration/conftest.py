"""Integration fixtures: the real stack, started (or reused) once per session; a namespace per test.

A missing service fails the run with a message saying which one; nothing is ever skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from panopticon.kafka import common_config
from panopticon.settings import Settings, load_settings, without_password
from panopticon.storage import SearchStore, open_store
from tests.integration.processes import ProcessGroup

ROOT = Path(__file__).resolve().parents[2]

BASE_ENV = {
    "ELASTICSEARCH_NODE": os.environ.get("ELASTICSEARCH_NODE", "http://127.0.0.1:9200"),
    "KAFKA_BROKERS": os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092"),
    "REDIS_HOST": os.environ.get("REDIS_HOST", "127.0.0.1"),
    "SEARCH_ENGINE": os.environ.get("SEARCH_ENGINE", "auto"),
    "STREAM_THROUGHPUT_INTERVAL_SECONDS": "2",
    "LOG_LEVEL": "info",
}


def _check_stack(settings: Settings) -> list[str]:
    problems = []
    store = open_store(settings)
    if not store.ping():
        problems.append(f"search engine at {settings.elasticsearch_node} does not answer")
    store.close()
    try:
        AdminClient(common_config(settings)).list_topics(timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure means the broker is not usable
        problems.append(f"kafka at {settings.kafka_bootstrap} does not answer: {exc}")
    try:
        redis.Redis.from_url(settings.redis_url(), socket_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"redis at {without_password(settings.redis_url())} does not answer: {exc}")
    return problems


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The running stack; started with infra/stack.sh when it does not answer."""
    settings = load_settings(BASE_ENV, root=ROOT / "tests")
    if _check_stack(settings):
        subprocess.run(["bash", str(ROOT / "infra" / "stack.sh"), "up"], check=False)
        problems = _check_stack(settings)
        if problems:
            pytest.fail("the local stack is not usable: " + "; ".join(problems), pytrace=False)
    return settings


@pytest.fixture
def namespace(stack: Settings) -> Iterator[Settings]:
    """Settings whose data streams, topics, consumer group and Celery queue belong to this test only."""
    yield from own_namespace(stack)


def own_namespace(stack: Settings) -> Iterator[Settings]:
    """The body of `namespace`, for fixtures of a wider scope (tests/browser shares one per module)."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    settings = stack.replace(
        index_prefix=f"{ns}-",
        kafka_apm_log_topic=f"{ns}.apm.logs",
        kafka_apm_span_topic=f"{ns}.apm.spans",
        kafka_apm_log_error_topic=f"{ns}.apm.logs.error",
        kafka_apm_dlq_topic=f"{ns}.apm.dlq",
        kafka_otlp_span_topic=f"{ns}.otlp_spans",
        kafka_otlp_log_topic=f"{ns}.otlp_logs",
        kafka_consumer_group=f"{ns}-bridge",
        celery_queue=f"{ns}-queue",
        celery_rollup_queue=f"{ns}-rollup",
        celery_alerts_queue=f"{ns}-alerts",
        metrics_cache_prefix=f"{ns}:metrics:",
        error_channel=f"{ns}:error-logs",
        bridge_metrics_port=0,
    )
    try:
        yield settings
    finally:
        store = open_store(settings)
        store.delete_namespace()
        store.close()
        admin = AdminClient(common_config(settings))
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(ns)]
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                future.result(30)


@pytest.fixture
def store(namespace: Settings) -> Iterator[SearchStore]:
    """A store whose templates and data streams exist for this test's namespace."""
    s = open_store(namespace, setup=True)
    yield s
    s.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start project processes (bridge, worker, ...) as real subprocesses; all are killed afterwards."""
    group = ProcessGroup(ROOT, tmp_path)
    yield group
    group.stop_all()
