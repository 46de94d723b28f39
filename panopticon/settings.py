"""Configuration: read once from the environment and `.env` / `.env.local`, validated, passed in.

Every variable Panopticon reads is a field of `Settings`; its metadata holds the environment name,
the parser and the documentation line. `.env.example` and OPERATIONS.md are checked against this
table by the test suite, so the documentation cannot drift from the code. No other module reads
`os.environ`.

Precedence (highest first): the process environment, `.env.local`, `.env`, the default.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dotenv import dotenv_values

from panopticon.exceptions import ConfigError

Parser = Callable[[str], Any]


def _int(minimum: int | None = None, maximum: int | None = None) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value

    return parse


def _float(minimum: float | None = None, maximum: float | None = None) -> Parser:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if value != value or (minimum is not None and value < minimum):
            raise ValueError(f"must be a number of at least {minimum}, got {raw!r}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _str(raw: str) -> str:
    return raw.strip()


def _optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _optional(parse: Parser) -> Parser:
    """`parse`, with empty meaning None (a value computed from other settings)."""
    def optional(raw: str) -> Any:
        return parse(raw) if raw.strip() else None

    return optional


def _choice(*allowed: str) -> Parser:
    def parse(raw: str) -> str:
        word = raw.strip().lower()
        if word not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {raw!r}")
        return word

    return parse


def _divisor_of(whole: int) -> Parser:
    def parse(raw: str) -> int:
        value: int = _int(1, whole)(raw)
        if whole % value:
            raise ValueError(f"must divide {whole}, got {value}")
        return value

    return parse


def _sasl_mechanism(raw: str) -> str | None:
    word = raw.strip().upper().replace("_", "-")
    allowed = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS-MSK-IAM")
    if not word:
        return None
    if word not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}, got {raw!r}")
    return word


def _path(raw: str) -> str | None:
    value = raw.strip()
    if value and not Path(value).is_file():
        raise ValueError(f"file not found: {value}")
    return value or None


def _url_path(raw: str) -> str:
    value = raw.strip()
    if not value.startswith("/"):
        raise ValueError(f"must start with '/', got {raw!r}")
    return value


def _host(raw: str) -> str:
    """An address to listen on: an IP literal or a name, never empty (there is no safe 'any' default)."""
    value = raw.strip()
    if not value or any(c.isspace() or c in "/@" for c in value):
        raise ValueError(f"expected an address such as 127.0.0.1 or 0.0.0.0, got {raw!r}")
    return value


def _basic_auth(raw: str) -> str | None:
    value = raw.strip()
    if value and any(":" not in pair or pair.startswith(":") for pair in value.split(",")):
        raise ValueError("expected user:password (comma-separate several pairs)")
    return value or None


def _http_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if value and not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {raw!r}")
    return value


def _ws_url(raw: str) -> str:
    value = raw.strip()
    if value and not value.lower().startswith(("ws://", "wss://")):
        raise ValueError(f"must start with ws:// or wss://, got {raw!r}")
    return value


def var(env: str, parse: Parser, default: str, doc: str, *, secret: bool = False, group: str = "") -> Any:
    """A settings field bound to one environment variable; `default` is given as the raw text."""
    return field(
        default=None,
        metadata={"env": env, "parse": parse, "default": default, "doc": doc, "secret": secret, "group": group},
    )


@dataclass(frozen=True)
class Settings:
    # --- search engine ----------------------------------------------------------------------------
    elasticsearch_node: str = var(
        "ELASTICSEARCH_NODE", _str, "http://127.0.0.1:9200",
        "URL of the Elasticsearch or OpenSearch node (comma-separate several).", group="Search engine")
    search_engine: str = var(
        "SEARCH_ENGINE", _choice("auto", "elasticsearch", "opensearch"), "auto",
        "Which client to use; 'auto' asks the node once at start-up.", group="Search engine")
    opensearch_username: str | None = var(
        "OPENSEARCH_USERNAME", _optional_str, "", "Basic-auth user for the search engine.", group="Search engine")
    opensearch_password: str | None = var(
        "OPENSEARCH_PASSWORD", _optional_str, "", "Basic-auth password for the search engine.",
        secret=True, group="Search engine")
    opensearch_reject_unauthorized: bool = var(
        "OPENSEARCH_REJECT_UNAUTHORIZED", _bool, "true",
        "Verify the engine's TLS certificate (false accepts any certificate).", group="Search engine")
    search_ca_file: str | None = var(
        "SEARCH_CA_FILE", _path, "", "CA bundle used to verify the engine's TLS certificate.", group="Search engine")
    use_ism: bool = var(
        "USE_ISM", _bool, "false",
        "Apply retention with OpenSearch ISM (Elasticsearch always uses ILM).", group="Search engine")
    search_timeout_seconds: float = var(
        "SEARCH_TIMEOUT_SECONDS", _float(0.1), "30", "Timeout of one request to the engine.", group="Search engine")
    search_refresh_interval_ms: int = var(
        "SEARCH_REFRESH_INTERVAL_MS", _int(100, 60_000), "500",
        "How often the engine makes newly written spans and logs searchable (the refresh_interval of logs-apm and "
        "traces-apm, applied to their existing indices at start too): most of the time from produce to search. "
        "Shorter costs the engine more CPU per event; the rollup indices keep 1 s (each roll refreshes its own).",
        group="Search engine")
    index_prefix: str = var(
        "INDEX_PREFIX", _str, "",
        "Prefix of every data stream and template name (isolates deployments and tests).", group="Search engine")
    logs_retention_days: int = var(
        "LOGS_RETENTION_DAYS", _int(1), "7", "Days `logs-apm` keeps data (ILM/ISM).", group="Search engine")
    traces_retention_days: int = var(
        "TRACES_RETENTION_DAYS", _int(1), "7", "Days `traces-apm` keeps data (ILM/ISM).", group="Search engine")
    metrics_retention_days: int = var(
        "METRICS_RETENTION_DAYS", _int(1), "90", "Days `metrics-apm` keeps rollups.", group="Search engine")

    # --- kafka --------------------------------------------------------------------------------------
    kafka_brokers: str = var(
        "KAFKA_BROKERS", _str, "", "Kafka bootstrap servers, comma separated.", group="Kafka")
    kafka_brokers_local: str = var(
        "KAFKA_BROKERS_LOCAL", _str, "127.0.0.1:9092",
        "Bootstrap servers used when KAFKA_BROKERS is empty (the local stack).", group="Kafka")
    kafka_ssl: bool = var("KAFKA_SSL", _bool, "false", "Connect to Kafka over TLS.", group="Kafka")
    kafka_ssl_ca_file: str | None = var(
        "KAFKA_SSL_CA_FILE", _path, "", "CA bundle that signs the brokers' certificates.", group="Kafka")
    kafka_sasl_mechanism: str | None = var(
        "KAFKA_SASL_MECHANISM", _sasl_mechanism, "",
        "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS-MSK-IAM; empty for none.", group="Kafka")
    kafka_allow_plaintext_sasl: bool = var(
        "KAFKA_ALLOW_PLAINTEXT_SASL", _bool, "false",
        "Allow KAFKA_SASL_MECHANISM without KAFKA_SSL (the password crosses the network in clear).", group="Kafka")
    kafka_sasl_username: str | None = var(
        "KAFKA_SASL_USERNAME", _optional_str, "", "SASL user name.", group="Kafka")
    kafka_sasl_password: str | None = var(
        "KAFKA_SASL_PASSWORD", _optional_str, "", "SASL password.", secret=True, group="Kafka")
    kafka_aws_region: str | None = var(
        "KAFKA_AWS_REGION", _optional_str, "", "AWS region for MSK IAM authentication.", group="Kafka")
    kafka_client_id: str = var("KAFKA_CLIENT_ID", _str, "panopticon", "Kafka client id.", group="Kafka")
    kafka_consumer_group: str = var(
        "KAFKA_CONSUMER_GROUP", _str, "panopticon-bridge", "Consumer group of the bridge.", group="Kafka")
    kafka_session_timeout_ms: int = var(
        "KAFKA_SESSION_TIMEOUT_MS", _int(3000, 300_000), "30000",
        "A consumer silent this long leaves its group and its partitions go to another member.", group="Kafka")
    kafka_topic_partitions: int = var(
        "KAFKA_TOPIC_PARTITIONS", _int(1, 1024), "3",
        "Partitions of the topics the bridge creates when they are missing.", group="Kafka")
    kafka_apm_log_topic: str = var("KAFKA_APM_LOG_TOPIC", _str, "apm.logs", "Topic of log messages.", group="Kafka")
    kafka_apm_span_topic: str = var(
        "KAFKA_APM_SPAN_TOPIC", _str, "apm.spans", "Topic of span messages.", group="Kafka")
    kafka_apm_log_error_topic: str = var(
        "KAFKA_APM_LOG_ERROR_TOPIC", _str, "apm.logs.error", "Topic ERROR/FATAL logs are copied to.", group="Kafka")
    kafka_apm_dlq_topic: str = var(
        "KAFKA_APM_DLQ_TOPIC", _str, "apm.dlq", "Dead-letter topic for messages that cannot be stored.",
        group="Kafka")
    kafka_otlp_span_topic: str = var(
        "KAFKA_OTLP_SPAN_TOPIC", _str, "otlp_spans",
        "Topic of OTLP trace records (the Collector's kafkaexporter default; the `otlp` receiver writes here).",
        group="Kafka")
    kafka_otlp_log_topic: str = var(
        "KAFKA_OTLP_LOG_TOPIC", _str, "otlp_logs", "Topic of OTLP log records (as KAFKA_OTLP_SPAN_TOPIC).",
        group="Kafka")
    kafka_otlp_encoding: str = var(
        "KAFKA_OTLP_ENCODING", _choice("otlp_proto", "otlp_json"), "otlp_proto",
        "Encoding of the OTLP topics' records (kafkaexporter `encoding`); the receiver writes it, the bridge reads it.",
        group="Kafka")

    # --- redis and celery ---------------------------------------------------------------------------
    redis_host: str | None = var(
        "REDIS_HOST", _optional_str, "",
        "Redis host for the query cache and error pub/sub; empty turns the cache off.", group="Redis and Celery")
    redis_port: int = var("REDIS_PORT", _int(1, 65535), "6379", "Redis port.", group="Redis and Celery")
    redis_username: str | None = var(
        "REDIS_USERNAME", _optional_str, "", "Redis ACL user (with REDIS_PASSWORD); empty for the default user.",
        group="Redis and Celery")
    redis_password: str | None = var(
        "REDIS_PASSWORD", _optional_str, "", "Redis password.", secret=True, group="Redis and Celery")
    redis_tls: bool = var(
        "REDIS_TLS", _bool, "false",
        "Connect to Redis over TLS (rediss://), verifying its certificate and host name: broker, results, cache "
        "and pub/sub alike.", group="Redis and Celery")
    redis_ca_file: str | None = var(
        "REDIS_CA_FILE", _path, "", "CA bundle that signs Redis's certificate (REDIS_TLS); empty: the system's.",
        group="Redis and Celery")
    redis_db: int = var("REDIS_DB", _int(0, 15), "0", "Redis database of the cache and pub/sub.",
                        group="Redis and Celery")
    celery_broker_url: str = var(
        "CELERY_BROKER_URL", _str, "",
        "Celery broker; empty means Redis at REDIS_HOST (or 127.0.0.1) database 1.", secret=True,
        group="Redis and Celery")
    celery_result_backend: str = var(
        "CELERY_RESULT_BACKEND", _str, "",
        "Celery result backend; empty means Redis at REDIS_HOST (or 127.0.0.1) database 2.", secret=True,
        group="Redis and Celery")
    celery_queue: str = var(
        "CELERY_QUEUE", _str, "panopticon",
        "Queue of the ingest tasks (bulk_index, dead_letter): the `worker` process.", group="Redis and Celery")
    celery_rollup_queue: str = var(
        "CELERY_ROLLUP_QUEUE", _str, "panopticon-rollup",
        "Queue of the scheduled tasks (rollups): the `rollup` process, so they never hold an ingest slot.",
        group="Redis and Celery")
    celery_alerts_queue: str = var(
        "CELERY_ALERTS_QUEUE", _str, "panopticon-alerts",
        "Queue of the alert tasks (evaluation every minute, notifications): the `alerts` process.",
        group="Redis and Celery")
    metrics_cache_prefix: str = var(
        "METRICS_CACHE_PREFIX", _str, "panopticon:metrics:", "Key prefix of cached query answers.",
        group="Redis and Celery")
    metrics_cache_ttl_seconds: int = var(
        "METRICS_CACHE_TTL_SECONDS", _int(0), "30", "Lifetime of a cached metrics answer.", group="Redis and Celery")
    error_channel: str = var(
        "ERROR_LOG_CHANNEL", _str, "panopticon:error-logs",
        "Redis pub/sub channel the relay publishes error logs to.", group="Redis and Celery")

    # --- ingest -------------------------------------------------------------------------------------
    bulk_batch_size: int = var(
        "BULK_BATCH_SIZE", _int(1, 100_000), "5000", "Messages per bulk_index batch (count trigger).",
        group="Ingest")
    bulk_batch_bytes_mb: float = var(
        "BULK_BATCH_BYTES_MB", _float(0.001, 100), "5", "Megabytes per batch (size trigger).", group="Ingest")
    otlp_batch_bytes_mb: float = var(
        "OTLP_BATCH_BYTES_MB", _float(0.001, 100), "1",
        "Megabytes per batch of OTLP records (size trigger; about 6,000 spans of 170 bytes: an OTLP record holds a "
        "whole export request, so BULK_BATCH_SIZE, which counts records, would make huge bulks).", group="Ingest")
    bulk_flush_interval_ms: int = var(
        "BULK_FLUSH_INTERVAL_MS", _int(1, 600_000), "250", "Oldest message age that closes a batch (timer trigger).",
        group="Ingest")
    bulk_idle_flush_ms: int = var(
        "BULK_IDLE_FLUSH_MS", _int(0, 600_000), "10",
        "Oldest message age that closes a batch while no batch is in flight: the workers wait then, so a message "
        "(an error log on its way to a screen among them) does not wait out BULK_FLUSH_INTERVAL_MS. At most "
        "BULK_FLUSH_INTERVAL_MS; under load batches are in flight and fill up as before.", group="Ingest")
    bulk_max_parallel_flushes: int = var(
        "BULK_MAX_PARALLEL_FLUSHES", _int(1, 1000), "8",
        "Batches in flight at once; when as many more wait, the bridge pauses its partitions.", group="Ingest")
    bulk_task_timeout_seconds: float = var(
        "BULK_TASK_TIMEOUT_SECONDS", _float(1), "120",
        "A batch a worker started and did not confirm within this time is handed off again (the worker kills "
        "the task at 0.75 of it).", group="Ingest")
    bulk_queue_timeout_seconds: float = var(
        "BULK_QUEUE_TIMEOUT_SECONDS", _float(1), "300",
        "A batch no worker started within this time is handed off again, and the waiting copy revoked (the "
        "broker may have lost it). Longer than the queue wait under load: in-flight batches / worker slots x "
        "bulk time.", group="Ingest")
    bulk_poison_attempts: int = var(
        "BULK_POISON_ATTEMPTS", _int(1, 20), "3",
        "Failures of a batch (other than the engine or Kafka not answering) before it is split in two; a "
        "message that fails alone this often is dead-lettered.", group="Ingest")
    bulk_max_request_mb: float = var(
        "BULK_MAX_REQUEST_MB", _float(0.1, 1000), "10",
        "Largest _bulk request body; a batch's documents are split into requests below it (the engine's own "
        "limit is http.max_content_length, 100 MB by default).", group="Ingest")
    bridge_commit_interval_seconds: float = var(
        "BRIDGE_COMMIT_INTERVAL_SECONDS", _float(0.1, 86_400), "1",
        "How often the bridge commits the offsets that are stored.", group="Ingest")
    bulk_max_retries: int = var(
        "BULK_MAX_RETRIES", _int(0, 100), "5", "Retries of 429/5xx bulk items inside one task.", group="Ingest")
    max_message_bytes: int = var(
        "MAX_MESSAGE_BYTES", _int(1), "1048576", "Larger messages go to the dead-letter topic.", group="Ingest")
    dlq_max_ratio: float = var(
        "DLQ_MAX_RATIO", _float(0, 1), "0.5",
        "Share of dead-lettered messages in the window that stops the pipeline loudly.", group="Ingest")
    dlq_window: int = var(
        "DLQ_WINDOW", _int(1), "1000", "Messages in the dead-letter ratio window.", group="Ingest")
    dlq_max_message_bytes: int = var(
        "DLQ_MAX_MESSAGE_BYTES", _int(65_536), "1048576",
        "max.message.bytes of the dead-letter topic the bridge creates; a longer payload is cut to fit (headers "
        "keep its size and sha256). An existing topic's own limit wins when it is lower.", group="Ingest")
    stream_throughput_enabled: bool = var(
        "STREAM_THROUGHPUT_ENABLED", _bool, "true", "Log the bridge's throughput periodically.", group="Ingest")
    stream_throughput_interval_seconds: float = var(
        "STREAM_THROUGHPUT_INTERVAL_SECONDS", _float(0.1), "10", "Seconds between throughput log lines.",
        group="Ingest")

    # --- rollup -------------------------------------------------------------------------------------
    rollup_enabled: bool = var(
        "ROLLUP_ENABLED", _bool, "true", "Roll spans up into metrics-apm and read rollups for old ranges.",
        group="Rollup")
    rollup_threshold_minutes: int = var(
        "ROLLUP_THRESHOLD_MINUTES", _int(1), "60",
        "Data older than this is read from rollups; newer from raw spans.", group="Rollup")
    rollup_bucket_minutes: int = var(
        "ROLLUP_BUCKET_MINUTES", _divisor_of(60), "1",
        "Width of a rollup window in minutes; divides 60 so hourly rollups merge whole windows.", group="Rollup")
    rollup_cache_ttl_seconds: int = var(
        "ROLLUP_CACHE_TTL_SECONDS", _int(0), "300", "Lifetime of a cached answer read only from rollups.",
        group="Rollup")
    rollup_settle_seconds: int | None = var(
        "ROLLUP_SETTLE_SECONDS", _optional(_int(1)), "",
        "Spans stored longer ago than this are all visible (no batch started earlier can still write); each "
        "rollup run takes in what was stored up to now minus this. At least the worker's hard task limit "
        "(0.75 x BULK_TASK_TIMEOUT_SECONDS) + SEARCH_TIMEOUT_SECONDS + 2; empty: that + 30 (152 with the "
        "defaults).", group="Rollup")
    rollup_interval_seconds: float = var(
        "ROLLUP_INTERVAL_SECONDS", _float(1, 3600), "60", "How often beat sends the rollup run.", group="Rollup")
    rollup_max_windows_per_run: int = var(
        "ROLLUP_MAX_WINDOWS_PER_RUN", _int(1, 100_000), "360",
        "Most windows one rollup run rolls up; a longer catch-up continues exactly where it stopped on the next "
        "runs.", group="Rollup")

    # --- http api and websocket ---------------------------------------------------------------------
    api_port: int = var("API_PORT", _int(1, 65535), "3001", "Port of the HTTP API (`web`).", group="API")
    api_bind_host: str = var(
        "API_BIND_HOST", _host, "127.0.0.1",
        "Address `web` listens on; 0.0.0.0 opens it to other hosts (set API_AUTH_TOKENS then).", group="API")
    ws_port: int = var("WS_PORT", _int(1, 65535), "3010", "Port of the WebSocket server (`ws`).", group="API")
    ws_bind_host: str = var(
        "WS_BIND_HOST", _host, "127.0.0.1",
        "Address `ws` listens on; 0.0.0.0 opens it to other hosts (set API_AUTH_TOKENS then).", group="API")
    ws_path: str = var("WS_PATH", _url_path, "/ws/error-logs", "Path of the error-log WebSocket.", group="API")
    api_auth_tokens: tuple[str, ...] = var(
        "API_AUTH_TOKENS", _csv, "", "Bearer tokens, comma separated; empty turns auth off.", secret=True,
        group="API")
    cors_origins: tuple[str, ...] = var(
        "CORS_ORIGINS", _csv, "",
        "Browser origins allowed to call the API besides its own; while empty, loopback origins; '*' for any.",
        group="API")
    ws_allowed_origins: tuple[str, ...] = var(
        "WS_ALLOWED_ORIGINS", _csv, "",
        "Browser origins allowed to open the WebSocket besides our own (same host and port, or the same host on "
        "API_PORT); while empty, loopback origins too; '*' for any.", group="API")
    dashboard_ws_url: str = var(
        "DASHBOARD_WS_URL", _ws_url, "",
        "WebSocket URL the dashboard's live page opens; empty means ws(s)://<the page's host>:WS_PORT + WS_PATH.",
        group="API")
    query_max_range_days: int = var(
        "QUERY_MAX_RANGE_DAYS", _int(1), "31", "Longest time range one query may cover.", group="API")
    query_max_page_size: int = var(
        "QUERY_MAX_PAGE_SIZE", _int(1, 9_999), "500",
        "Largest page a search may ask for (below the engine's 10,000-hit window: a page asks for one more).",
        group="API")
    query_max_buckets: int = var(
        "QUERY_MAX_BUCKETS", _int(1, 100_000), "1440", "Most time buckets in one metrics answer.", group="API")
    query_timeout_seconds: float = var(
        "QUERY_TIMEOUT_SECONDS", _float(0.1, 300), "10",
        "Deadline of one answer: every engine request it needs shares it; past it the answer is a 503.", group="API")
    zipkin_ui_dir: str = var(
        "ZIPKIN_UI_DIR", _str, ".cache/zipkin/lens",
        "Folder of the Zipkin UI's (Lens) files that `web` serves at /zipkin/ (`make zipkin-ui` fetches them); "
        "a missing folder answers 404 there.", group="API")
    query_max_rollup_documents: int = var(
        "QUERY_MAX_ROLLUP_DOCUMENTS", _int(1000), "200000",
        "Most rollup documents one answer may read; beyond it the request is refused with a 400.", group="API")

    # --- live error stream (relay + ws) ------------------------------------------------------------
    error_relay_group: str = var(
        "ERROR_RELAY_GROUP", _str, "panopticon-error-relay",
        "Consumer group of the relay (apm.logs.error -> Redis pub/sub).", group="Error stream")
    error_relay_max_age_seconds: int = var(
        "ERROR_RELAY_MAX_AGE_SECONDS", _int(1), "300",
        "Error logs older than this are not published live (a new group does not replay history; "
        "reconnecting clients read them from logs-apm).", group="Error stream")
    ws_max_clients: int = var(
        "WS_MAX_CLIENTS", _int(1, 100_000), "2000",
        "Open sockets one `ws` process accepts; more are refused with 503.", group="Error stream")
    ws_client_queue_size: int = var(
        "WS_CLIENT_QUEUE_SIZE", _int(1, 100_000), "1000",
        "Messages waiting for one client; beyond it they are dropped and the client told how many.",
        group="Error stream")
    ws_send_timeout_seconds: float = var(
        "WS_SEND_TIMEOUT_SECONDS", _float(0.1), "10",
        "A client whose socket accepts nothing for this long is disconnected.", group="Error stream")
    ws_ping_interval_seconds: float = var(
        "WS_PING_INTERVAL_SECONDS", _float(0.5), "25",
        "Keep-alive ping to idle clients; one unanswered for two intervals closes the socket.",
        group="Error stream")
    ws_max_inbound_bytes: int = var(
        "WS_MAX_INBOUND_BYTES", _int(16, 1_048_576), "4096",
        "Largest message a client may send (it is ignored); larger closes the socket with 1009.",
        group="Error stream")
    ws_gap_fill_max: int = var(
        "WS_GAP_FILL_MAX", _int(0, 10_000), "1000",
        "Most missed error logs sent to a client reconnecting with since=; the newest are kept.",
        group="Error stream")
    ws_gap_fill_max_age_seconds: int = var(
        "WS_GAP_FILL_MAX_AGE_SECONDS", _int(1, 30 * 86_400), "3600",
        "Oldest since= a reconnecting client is served from; an older one is clamped to it (and told so).",
        group="Error stream")
    ws_gap_fill_concurrency: int = var(
        "WS_GAP_FILL_CONCURRENCY", _int(1, 64), "4",
        "Gap fills one `ws` process reads and holds at once (clients with the same since= and filter share "
        "one); the others wait, subscribed, so memory is bounded by this x WS_GAP_FILL_MAX logs.",
        group="Error stream")
    ws_dedupe_window: int = var(
        "WS_DEDUPE_WINDOW", _int(100, 1_000_000), "20000",
        "Recent error-log ids one `ws` process remembers to drop repeats and place cursors; the relay keeps as "
        "many in Redis, in publish order, for `ws` processes that start later.",
        group="Error stream")
    ws_collapse_interval_seconds: float = var(
        "WS_COLLAPSE_INTERVAL_SECONDS", _float(0.5, 3600), "10",
        "A collapse=1 client gets at most one error-group summary per group this often (the count since the last).",
        group="Error stream")
    relay_metrics_port: int = var(
        "RELAY_METRICS_PORT", _int(0, 65535), "9465", "Port of the relay's Prometheus /metrics; 0 turns it off.",
        group="Error stream")

    # --- otlp receiver ------------------------------------------------------------------------------
    otlp_http_port: int = var(
        "OTLP_HTTP_PORT", _int(1, 65535), "4318", "Port of the `otlp` receiver (/v1/traces, /v1/logs).",
        group="OTLP")
    otlp_max_body_bytes: int = var(
        "OTLP_MAX_BODY_BYTES", _int(1024, 64 * 1024 * 1024), "4194304",
        "Largest OTLP request body, both as sent and after gzip (413 beyond), and so the largest OTLP record; "
        "the OTLP topics are created to take it.", group="OTLP")
    otlp_kafka_timeout_seconds: float = var(
        "OTLP_KAFKA_TIMEOUT_SECONDS", _float(0.5, 300), "10",
        "How long a request waits for Kafka to acknowledge its data before the answer is 503.", group="OTLP")
    otlp_threads: int = var(
        "OTLP_THREADS", _int(1, 256), "16", "Request threads of the `otlp` receiver (gunicorn gthread).",
        group="OTLP")

    # --- alerting -----------------------------------------------------------------------------------
    alert_rules_file: str | None = var(
        "ALERT_RULES_FILE", _path, "",
        "YAML file of alert rules and receivers (README, Alerting), checked at start; empty: no alerting.",
        group="Alerting")
    alert_interval_seconds: float = var(
        "ALERT_INTERVAL_SECONDS", _float(1, 3600), "60", "How often beat sends the evaluation of every rule.",
        group="Alerting")
    alert_webhook_timeout_seconds: float = var(
        "ALERT_WEBHOOK_TIMEOUT_SECONDS", _float(0.5, 60), "5",
        "How long one notification waits for its receiver to answer.", group="Alerting")
    alert_retry_first_seconds: float = var(
        "ALERT_RETRY_FIRST_SECONDS", _float(0.1, 600), "10",
        "Wait before the first retry of a notification its receiver did not take; each retry doubles it.",
        group="Alerting")
    alert_retry_max_seconds: float = var(
        "ALERT_RETRY_MAX_SECONDS", _float(0.1, 600), "120",
        "Longest wait between two retries of a notification (below the broker's 720 s visibility timeout).",
        group="Alerting")
    alert_give_up_seconds: float = var(
        "ALERT_GIVE_UP_SECONDS", _float(1, 30 * 86_400), "86400",
        "A notification its receiver has not taken this long after the change is given up (and counted).",
        group="Alerting")
    alert_dashboard_url: str = var(
        "ALERT_DASHBOARD_URL", _http_url, "",
        "Base URL of the dashboard in notifications' links; empty: http://127.0.0.1:API_PORT.", group="Alerting")

    # --- operations ---------------------------------------------------------------------------------
    flower_port: int = var("FLOWER_PORT", _int(1, 65535), "5555", "Port of Flower.", group="Operations")
    flower_basic_auth: str | None = var(
        "FLOWER_BASIC_AUTH", _basic_auth, "",
        "user:password for Flower; empty: Flower listens on 127.0.0.1 only, whatever FLOWER_BIND_HOST says.",
        secret=True, group="Operations")
    flower_bind_host: str = var(
        "FLOWER_BIND_HOST", _host, "127.0.0.1", "Address Flower listens on when FLOWER_BASIC_AUTH is set.",
        group="Operations")
    metrics_bind_host: str = var(
        "METRICS_BIND_HOST", _host, "127.0.0.1",
        "Address of the bridge's and the relay's /metrics (bearer auth when API_AUTH_TOKENS is set).",
        group="Operations")
    otlp_bind_host: str = var(
        "OTLP_BIND_HOST", _host, "127.0.0.1",
        "Address the `otlp` receiver listens on (bearer auth when API_AUTH_TOKENS is set).", group="Operations")
    bridge_metrics_port: int = var(
        "BRIDGE_METRICS_PORT", _int(0, 65535), "9464", "Port of the bridge's Prometheus /metrics; 0 turns it off.",
        group="Operations")
    log_level: str = var(
        "LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info", "Log level of every process.",
        group="Operations")
    log_format: str = var("LOG_FORMAT", _choice("text", "json"), "text", "text or json (one object a line).",
                          group="Operations")

    def __post_init__(self) -> None:
        """Rules that involve several variables, checked whenever settings are built (`replace` too)."""
        if getattr(self, "kafka_sasl_mechanism", None) is None:
            return  # built field by field (no values yet), or no SASL: nothing to check
        implied_tls = self.kafka_sasl_mechanism == "AWS-MSK-IAM" or (
            self.kafka_aws_region and self.kafka_sasl_mechanism == "OAUTHBEARER")
        if not (self.kafka_ssl or implied_tls or self.kafka_allow_plaintext_sasl):
            raise ConfigError(
                f"KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism} without KAFKA_SSL=true would send the SASL "
                "credentials in clear: set KAFKA_SSL=true (and KAFKA_SSL_CA_FILE), or KAFKA_ALLOW_PLAINTEXT_SASL=true "
                "to accept that")

    # --- derived values -----------------------------------------------------------------------------
    @property
    def bulk_task_time_limit_seconds(self) -> float:
        """The worker kills a bulk_index task after this (Celery's hard limit): no batch writes for longer."""
        return max(2.0, self.bulk_task_timeout_seconds * 0.75)

    @property
    def bulk_task_soft_limit_seconds(self) -> float:
        return max(1.0, self.bulk_task_timeout_seconds * 0.5)

    @property
    def settle_floor_seconds(self) -> float:
        """No batch can still write this long after it started (the worker's hard limit, a bulk request, a refresh)."""
        return self.bulk_task_time_limit_seconds + self.search_timeout_seconds + 2

    @property
    def settle_seconds(self) -> int:
        """ROLLUP_SETTLE_SECONDS, or when empty the floor plus a 30 s margin for clocks that disagree."""
        if self.rollup_settle_seconds is not None:
            return self.rollup_settle_seconds
        return math.ceil(self.settle_floor_seconds + 30)

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_brokers or self.kafka_brokers_local

    @property
    def search_nodes(self) -> list[str]:
        return [node.strip() for node in self.elasticsearch_node.split(",") if node.strip()]

    def redis_url(self, db: int | None = None) -> str:
        """The one Redis URL of every client: broker, result backend, query cache, pub/sub.

        With REDIS_TLS it is `rediss://` and asks for a verified certificate (`ssl_cert_reqs=required`, which
        Celery's backend insists on, and REDIS_CA_FILE when set); redis-py, kombu and Celery all read these
        query parameters, so no client needs options of its own.
        """
        host = self.redis_host or "127.0.0.1"
        user = quote(self.redis_username, safe="") if self.redis_username else ""
        auth = f"{user}:{quote(self.redis_password, safe='')}@" if self.redis_password else (f"{user}@" if user else "")
        url = f"{'rediss' if self.redis_tls else 'redis'}://{auth}{host}:{self.redis_port}/" \
              f"{self.redis_db if db is None else db}"
        if self.redis_tls:
            url += "?ssl_cert_reqs=required"
            if self.redis_ca_file:
                url += f"&ssl_ca_certs={quote(self.redis_ca_file, safe='')}"
        return url

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url(1)

    @property
    def result_backend(self) -> str:
        return self.celery_result_backend or self.redis_url(2)

    @property
    def cache_enabled(self) -> bool:
        return self.redis_host is not None

    def data_stream(self, name: str) -> str:
        """`logs-apm`, `traces-apm`, `metrics-apm`, ... with this deployment's prefix."""
        return f"{self.index_prefix}{name}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (tests and the CLI use it)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def settings_fields() -> list[Any]:
    """The table of variables, in declaration order."""
    return [f for f in fields(Settings) if "env" in f.metadata]


def read_sources(environ: Mapping[str, str] | None = None, root: Path | None = None) -> dict[str, str]:
    """Merge `.env`, `.env.local` and the environment, later sources winning."""
    root = root or Path.cwd()
    merged: dict[str, str] = {}
    for name in (".env", ".env.local"):
        path = root / name
        if path.is_file():
            merged.update({k: v or "" for k, v in dotenv_values(path).items()})
    merged.update(os.environ if environ is None else environ)
    return merged


def load_settings(environ: Mapping[str, str] | None = None, root: Path | None = None) -> Settings:
    """Parse every variable; the first bad one raises ConfigError naming it."""
    sources = read_sources(environ, root)
    values: dict[str, Any] = {}
    for f in settings_fields():
        env = f.metadata["env"]
        raw = sources.get(env, f.metadata["default"])
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise ConfigError(f"{env}: {exc}") from None
    settings = Settings(**values)
    check_together(settings)
    return settings


def check_together(settings: Settings) -> None:
    """The rules that tie several variables together; ConfigError names the one to change."""
    settle_floor = settings.settle_floor_seconds
    if settings.rollup_settle_seconds is not None and settings.rollup_settle_seconds < settle_floor:
        raise ConfigError(
            f"ROLLUP_SETTLE_SECONDS: must be at least {settle_floor:g} (the worker's hard task limit "
            f"{settings.bulk_task_time_limit_seconds:g} s from BULK_TASK_TIMEOUT_SECONDS, plus SEARCH_TIMEOUT_SECONDS "
            f"{settings.search_timeout_seconds:g} s, plus 2 s), got {settings.rollup_settle_seconds}: a batch could "
            "still be writing spans older than the rollups say are complete")


def load_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """For process entry points: a bad value stops start-up with one line naming the variable."""
    try:
        return load_settings(environ)
    except ConfigError as exc:
        print(f"panopticon: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def redacted(settings: Settings) -> dict[str, Any]:
    """Values safe to log: secrets replaced by '***'."""
    out: dict[str, Any] = {}
    for f in settings_fields():
        value = getattr(settings, f.name)
        out[f.metadata["env"]] = "***" if f.metadata["secret"] and value else value
    return out


def without_password(url: str) -> str:
    """`url` fit for a log line or an error message: the password (if any) replaced by '***'."""
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in auth:
        return url
    return f"{scheme}://{auth.split(':', 1)[0]}:***@{host}"


def to_environ(settings: Settings) -> dict[str, str]:
    """The variables that reproduce `settings` in a child process (the inverse of load_settings)."""
    out: dict[str, str] = {}
    for f in settings_fields():
        value = getattr(settings, f.name)
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        out[f.metadata["env"]] = text
    return out


def env_example() -> str:
    """The text of `.env.example`, generated from the table so it cannot drift."""
    lines = ["# Panopticon configuration. Every variable, with its default.",
             "# Copy to .env (or .env.local) and change what you need; the environment wins over both.", ""]
    group = None
    for f in settings_fields():
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            lines += ["", f"# --- {group} ---"]
        lines.append(f"# {f.metadata['doc']}")
        lines.append(f"{f.metadata['env']}={f.metadata['default']}")
    return "\n".join(lines).lstrip("\n") + "\n"


def env_markdown() -> str:
    """The environment-variable table of OPERATIONS.md, generated from the same table."""
    lines = ["| Variable | Default | Group | Meaning |", "| --- | --- | --- | --- |"]
    for f in settings_fields():
        default = f.metadata["default"] or "(empty)"
        lines.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['group']} | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"


ENV_TABLE_START = "<!-- env-table:start (generated by make docs) -->"
ENV_TABLE_END = "<!-- env-table:end -->"


def with_env_table(text: str) -> str:
    """`text` (OPERATIONS.md) with the generated table between its markers."""
    head, rest = text.split(ENV_TABLE_START, 1)
    _, tail = rest.split(ENV_TABLE_END, 1)
    return f"{head}{ENV_TABLE_START}\n{env_markdown()}{ENV_TABLE_END}{tail}"


def write_docs(root: Path) -> None:
    (root / ".env.example").write_text(env_example())
    operations = root / "OPERATIONS.md"
    operations.write_text(with_env_table(operations.read_text()))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-docs"]:
        write_docs(Path.cwd())
    elif sys.argv[1:] == ["--example"]:
        sys.stdout.write(env_example())
    elif sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(env_markdown())
    else:
        load_or_exit()
        print("configuration ok")
