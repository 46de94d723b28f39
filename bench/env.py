"""The stack, namespaces of our own, and what the machine is: the context every figure is recorded with."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from panopticon.kafka import common_config, ensure_topics
from panopticon.settings import Settings, load_settings, redacted, without_password
from panopticon.storage import SearchStore, open_store

ROOT = Path(__file__).resolve().parents[1]
STACK_PORTS = {"kafka": 9092, "engine": 9200, "redis": 6379}
KEY_PACKAGES = ("celery", "kombu", "confluent-kafka", "opensearch-py", "elasticsearch", "redis", "flask",
                "flask-sock", "marshmallow", "orjson", "msgpack", "gunicorn", "gevent", "psutil")


def stack_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings of the running stack: the environment (the Makefile exports the local addresses)."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("ELASTICSEARCH_NODE", "http://127.0.0.1:9200")
    env.setdefault("KAFKA_BROKERS", "127.0.0.1:9092")
    env.setdefault("REDIS_HOST", "127.0.0.1")
    return load_settings(env, root=ROOT / "bench")


def check_stack(settings: Settings) -> list[str]:
    """What does not answer; an empty list means the stack is usable."""
    problems = []
    store = open_store(settings)
    if not store.ping():
        problems.append(f"search engine at {settings.elasticsearch_node} does not answer")
    store.close()
    try:
        AdminClient(common_config(settings)).list_topics(timeout=10)
    except KafkaException as exc:
        problems.append(f"kafka at {settings.kafka_bootstrap} does not answer: {exc}")
    try:
        redis.Redis.from_url(settings.redis_url(), socket_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"redis at {without_password(settings.redis_url())} does not answer: {exc}")
    return problems


def namespaced(stack: Settings, label: str, **changes: Any) -> Settings:
    """Settings whose streams, topics, group, queue and channels belong to one measurement only."""
    ns = f"bench-{label}-{uuid.uuid4().hex[:6]}"
    # No metrics ports: a `make run` or a test on the same machine may hold the default ones.
    changes = {"bridge_metrics_port": 0, "relay_metrics_port": 0, **changes}
    return stack.replace(
        index_prefix=f"{ns}-",
        kafka_apm_log_topic=f"{ns}.apm.logs",
        kafka_apm_span_topic=f"{ns}.apm.spans",
        kafka_apm_log_error_topic=f"{ns}.apm.logs.error",
        kafka_apm_dlq_topic=f"{ns}.apm.dlq",
        kafka_otlp_span_topic=f"{ns}.otlp_spans",
        kafka_otlp_log_topic=f"{ns}.otlp_logs",
        kafka_consumer_group=f"{ns}-bridge",
        error_relay_group=f"{ns}-relay",
        celery_queue=f"{ns}-queue",
        metrics_cache_prefix=f"{ns}:metrics:",
        error_channel=f"{ns}:error-logs",
        **changes,
    )


def ensure_namespace_topics(settings: Settings) -> None:
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                             settings.kafka_apm_log_error_topic, settings.kafka_apm_dlq_topic])


@contextlib.contextmanager
def namespace(stack: Settings, label: str, *, topics: bool = True, setup: Callable[[Settings], None] | None = None,
              **changes: Any) -> Iterator[tuple[Settings, SearchStore]]:
    """A fresh namespace with templates, data streams (and topics); everything of it is deleted after.

    `setup` installs the templates and data streams instead of the working tree's store (a before/after
    run installs those of the checkout it measures, so a mapping change shows in the engine's CPU).
    """
    settings = namespaced(stack, label, **changes)
    if setup is None:
        store = open_store(settings, setup=True)
    else:
        setup(settings)
        store = open_store(settings)
    if topics:
        ensure_namespace_topics(settings)
    try:
        yield settings, store
    finally:
        drop_namespace(settings, store)


def drop_namespace(settings: Settings, store: SearchStore) -> None:
    with contextlib.suppress(Exception):
        store.delete_namespace()
    store.close()
    prefix = settings.index_prefix.rstrip("-")
    with contextlib.suppress(Exception):
        admin = AdminClient(common_config(settings))
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                future.result(30)
    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(settings.redis_url(), socket_timeout=3)
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)


# --- what the figures are recorded with -------------------------------------------------------------
def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(memory.total / 2**30, 1),
        "cpu_model": _cpu_model(),
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0]}
    store = open_store(settings)
    try:
        info = store.engine
        out["engine"] = f"{info.name} {info.version}"
    finally:
        store.close()
    out["kafka"] = _kafka_version()
    with contextlib.suppress(redis.RedisError):
        out["redis"] = redis.Redis.from_url(settings.redis_url(), socket_timeout=3).info("server")["redis_version"]
    out["packages"] = {}
    for name in KEY_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out["packages"][name] = metadata.version(name)
    out["git_commit"] = _git("rev-parse", "--short", "HEAD")
    out["git_dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return out


def _kafka_version() -> str:
    """The broker's version, from the jar the local stack runs (the protocol does not tell it)."""
    for jar in sorted((ROOT / ".cache" / "kafka" / "lib").glob("kafka_*.jar")):
        name = jar.stem  # kafka_2.13-4.1.1
        if name.count("-") == 1:
            return name.split("-", 1)[1]
    return "unknown (not the local stack)"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def stack_pids() -> dict[str, int]:
    """The pids listening on the stack's ports (kafka, engine, redis), for CPU accounting."""
    found: dict[str, int] = {}
    by_port = {port: name for name, port in STACK_PORTS.items()}
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in by_port and conn.pid:
                found.setdefault(by_port[conn.laddr.port], conn.pid)
    return found


def settings_record(settings: Settings) -> dict[str, Any]:
    """The settings a figure was measured with (secrets redacted; per-run names left out)."""
    skip = {"INDEX_PREFIX", "KAFKA_APM_LOG_TOPIC", "KAFKA_APM_SPAN_TOPIC", "KAFKA_APM_LOG_ERROR_TOPIC",
            "KAFKA_APM_DLQ_TOPIC", "KAFKA_OTLP_SPAN_TOPIC", "KAFKA_OTLP_LOG_TOPIC", "KAFKA_CONSUMER_GROUP",
            "ERROR_RELAY_GROUP", "CELERY_QUEUE",
            "METRICS_CACHE_PREFIX", "ERROR_LOG_CHANNEL"}
    return {k: v for k, v in redacted(settings).items() if k not in skip}


# --- what decides latency at idle -----------------------------------------------------------------------
# Settings whose name says they wait, poll or flush (whatever the working tree has: new ones show up too).
_LATENCY_SETTING = re.compile(r"FLUSH|INTERVAL|POLL|LINGER|REFRESH|WAIT|MAX_AGE|BATCH_SIZE")
_NOT_LATENCY = {"ROLLUP_INTERVAL_SECONDS", "STREAM_THROUGHPUT_INTERVAL_SECONDS", "WS_PING_INTERVAL_SECONDS",
                "ERROR_RELAY_MAX_AGE_SECONDS", "WS_GAP_FILL_MAX_AGE_SECONDS"}
# Modules of the path produce -> stored -> error topic -> Redis -> socket; their module-level timing constants.
_LATENCY_MODULES = ("panopticon.ingest.bridge", "panopticon.ingest.batcher", "panopticon.processing.tasks",
                    "panopticon.processing.outbox", "panopticon.errorstream.relay", "panopticon.errorstream.hub")
_TIMING_CONSTANT = re.compile(r"^[A-Z][A-Z0-9_]*(_S|_MS|_SECONDS|POLL[A-Z_]*|INTERVAL[A-Z_]*|LINGER[A-Z_]*)$")
_NOT_IDLE_PATH = re.compile(r"TIMEOUT|RETRY|CHECK|MARGIN|LOOKUP|BACKOFF")  # failure handling, not the idle path
# librdkafka's defaults (2.x) for the keys that decide how long a message waits in a client.
_RDKAFKA_DEFAULTS = {"fetch.wait.max.ms": 500, "fetch.min.bytes": 1, "fetch.queue.backoff.ms": 1000,
                     "linger.ms": 5}


def latency_settings(settings: Settings, store: SearchStore | None = None) -> dict[str, Any]:
    """Every knob on the idle path with its value: settings, module constants, Kafka client keys, the engine's
    refresh interval (read from the namespace's own backing index when `store` is given)."""
    import importlib

    from panopticon.kafka import consumer_config, producer_config

    record = settings_record(settings)
    out: dict[str, Any] = {"settings": {k: v for k, v in record.items()
                                        if _LATENCY_SETTING.search(k) and k not in _NOT_LATENCY}}
    constants: dict[str, Any] = {}
    for name in _LATENCY_MODULES:
        with contextlib.suppress(ImportError):
            module = importlib.import_module(name)
            for attr, value in vars(module).items():
                if (_TIMING_CONSTANT.match(attr) and not _NOT_IDLE_PATH.search(attr)
                        and isinstance(value, int | float) and not isinstance(value, bool)):
                    constants[f"{name.removeprefix('panopticon.')}.{attr}"] = value
    out["constants"] = constants
    consumer, producer = consumer_config(settings), producer_config(settings)
    out["kafka"] = {
        **{f"consumer {key}": consumer.get(key, f"{default} (librdkafka default)") for key, default in
           _RDKAFKA_DEFAULTS.items() if key != "linger.ms"},
        "producer linger.ms (worker outbox)": producer.get("linger.ms", "5 (librdkafka default)"),
    }
    if store is not None:
        out["engine_refresh_interval"] = _refresh_interval(store)
    return out


def _refresh_interval(store: SearchStore) -> str | None:
    from panopticon.storage import LOGS

    with contextlib.suppress(Exception):
        answer = store.transport.request("GET", f"/{store.name(LOGS)}/_settings",
                                         params={"include_defaults": "true", "flat_settings": "true"})
        for index in answer.values():
            found = index.get("settings", {}).get("index.refresh_interval") or \
                index.get("defaults", {}).get("index.refresh_interval")
            if found:
                return str(found)
    return None
