"""Every Prometheus metric Panopticon exports, listed once.

Each process serves its own registry: `web`, `ws` and `otlp` at `/metrics` on their own port, the bridge
and the relay on a small HTTP server of their own (BRIDGE_METRICS_PORT, RELAY_METRICS_PORT, bound to
METRICS_BIND_HOST and behind API_AUTH_TOKENS when it is set, like every other port). The
bridge sees the outcome of every bulk_index task, so the ingest metrics (item outcomes, batch sizes,
hand-off latency) are counted there, once, rather than in each worker child; Celery task runtimes
come from Flower's own `/metrics`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from panopticon.access import exposure_warning, token_ok

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# --- ingest (bridge) ----------------------------------------------------------------------------------
MESSAGES_CONSUMED = Counter(
    "panopticon_messages_consumed_total", "Kafka messages read by the bridge.", ["stream"], registry=REGISTRY)
MESSAGES_REDELIVERED = Counter(
    "panopticon_messages_redelivered_total",
    "Messages the Kafka consumer delivered a second time, at an offset the bridge had already taken since the "
    "partition was assigned; skipped (they are in a batch already).", registry=REGISTRY)
BYTES_CONSUMED = Counter(
    "panopticon_bytes_consumed_total", "Bytes of Kafka message values read by the bridge.", ["stream"],
    registry=REGISTRY)
CONSUMER_LAG = Gauge(
    "panopticon_consumer_lag", "Messages not yet read, per partition (sampled).", ["topic", "partition"],
    registry=REGISTRY)
BATCHES_IN_FLIGHT = Gauge(
    "panopticon_batches_in_flight", "bulk_index batches handed off and not yet confirmed.", registry=REGISTRY)
BRIDGE_PAUSED = Gauge(
    "panopticon_bridge_paused", "1 while the bridge has paused its partitions (in-flight limit).",
    registry=REGISTRY)
BATCH_MESSAGES = Histogram(
    "panopticon_batch_messages", "Messages per batch at flush.", ["stream"], buckets=_SIZE_BUCKETS,
    registry=REGISTRY)
BATCH_AGE = Histogram(
    "panopticon_batch_age_seconds", "Age of a batch's first message when the batch closed.", ["stream"],
    buckets=_SECONDS_BUCKETS, registry=REGISTRY)
BATCH_LATENCY = Histogram(
    "panopticon_batch_latency_seconds", "Hand-off to confirmed-stored time of a batch (bulk latency).",
    ["stream"], buckets=_SECONDS_BUCKETS, registry=REGISTRY)
BATCHES_RETRIED = Counter(
    "panopticon_batches_retried_total", "Batches handed off again after a failure or a time-out.", ["stream"],
    registry=REGISTRY)
ITEM_OUTCOMES = Counter(
    "panopticon_bulk_items_total",
    "Documents by outcome: created, duplicate (409, stored before), retried (429/5xx), dead_lettered.",
    ["stream", "outcome"], registry=REGISTRY)
ERRORS_FORWARDED = Counter(
    "panopticon_error_logs_forwarded_total", "ERROR/FATAL logs copied to the error topic.", registry=REGISTRY)
OFFSETS_COMMITTED = Counter(
    "panopticon_offset_commits_total", "Offset commits made by the bridge.", registry=REGISTRY)
COMMIT_ERRORS = Counter(
    "panopticon_offset_commit_errors_total",
    "Commits Kafka refused (rebalance, session time-out); the next commit offers the offsets again.",
    registry=REGISTRY)
BATCHES_BISECTED = Counter(
    "panopticon_batches_bisected_total", "Batches split in two after failing BULK_POISON_ATTEMPTS times.",
    ["stream"], registry=REGISTRY)
MESSAGES_GIVEN_UP = Counter(
    "panopticon_messages_given_up_total",
    "Messages dead-lettered by the bridge because they failed alone BULK_POISON_ATTEMPTS times.", ["stream"],
    registry=REGISTRY)
DUPLICATE_EXECUTIONS = Counter(
    "panopticon_duplicate_executions_total",
    "Superseded copies of a batch that a worker ran anyway (harmless: writes are idempotent).", registry=REGISTRY)

# --- otlp receiver (otlp) -------------------------------------------------------------------------------
OTLP_REQUESTS = Counter(
    "panopticon_otlp_requests_total", "OTLP/HTTP export requests answered, by signal and HTTP status.",
    ["signal", "status"], registry=REGISTRY)
OTLP_REQUEST_SECONDS = Histogram(
    "panopticon_otlp_request_seconds", "OTLP/HTTP request latency, Kafka's acknowledgement included.", ["signal"],
    buckets=_SECONDS_BUCKETS, registry=REGISTRY)
OTLP_ITEMS = Counter(
    "panopticon_otlp_items_total",
    "Spans / log records of OTLP requests: accepted (acknowledged by Kafka) or rejected (partial_success).",
    ["signal", "outcome"], registry=REGISTRY)
OTLP_BYTES = Counter(
    "panopticon_otlp_bytes_total", "Bytes of OTLP request bodies after decompression.", ["signal"],
    registry=REGISTRY)

# --- query api (web) ------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "panopticon_http_requests_total", "HTTP requests answered.", ["route", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram(
    "panopticon_http_request_seconds", "HTTP request latency.", ["route"], buckets=_SECONDS_BUCKETS,
    registry=REGISTRY)
CACHE_REQUESTS = Counter(
    "panopticon_cache_requests_total", "Query cache look-ups by result (hit, miss, error).", ["result"],
    registry=REGISTRY)
ROLLUP_WATERMARK = Gauge(
    "panopticon_rollup_watermark_seconds",
    "Unix time before which every stored span is in the rollups (the rollup mark; read at scrape).",
    registry=REGISTRY)
ROLLUP_LAG = Gauge(
    "panopticon_rollup_lag_seconds", "Now minus the rollup mark (read at scrape).", registry=REGISTRY)
ROLLUP_LATE_WINDOWS = Gauge(
    "panopticon_rollup_late_windows",
    "Windows the last rollup run rolled again because spans arrived after they had settled (read at scrape).",
    registry=REGISTRY)
ROLLUP_MAX_LATENESS = Gauge(
    "panopticon_rollup_max_lateness_seconds",
    "How long after its window closed the latest span of the last rollup run was stored (read at scrape).",
    registry=REGISTRY)
ROLLUP_PENDING = Gauge(
    "panopticon_rollup_scan_pending",
    "1 while a catch-up is split over several rollup runs (ROLLUP_MAX_WINDOWS_PER_RUN; read at scrape).",
    registry=REGISTRY)

ERROR_ROLLUP_LAG = Gauge(
    "panopticon_error_rollup_lag_seconds", "Now minus the error rollups' mark (errors-apm; read at scrape).",
    registry=REGISTRY)

# --- alerting (read at scrape by web from alerts-apm: the `alerts` workers serve no metrics of their own) ----------
ALERT_RULES = Gauge(
    "panopticon_alert_rules", "Alert rules of ALERT_RULES_FILE by state (inactive, pending, firing, resolved).",
    ["state"], registry=REGISTRY)
ALERT_LAST_EVALUATION = Gauge(
    "panopticon_alert_last_evaluation_timestamp_seconds", "Unix time of the last evaluation of the rules.",
    registry=REGISTRY)
ALERT_EVALUATION_SECONDS = Gauge(
    "panopticon_alert_evaluation_seconds", "Wall time the last evaluation of every rule took.", registry=REGISTRY)
ALERT_EVALUATION_CPU = Gauge(
    "panopticon_alert_evaluation_cpu_seconds", "CPU time of the `alerts` worker in the last evaluation.",
    registry=REGISTRY)
ALERT_NOT_EVALUATED = Gauge(
    "panopticon_alert_rules_not_evaluated",
    "Rules the last evaluation could not answer (the engine failed them); their state was kept.", registry=REGISTRY)
ALERT_NOTIFICATIONS = Gauge(
    "panopticon_alert_notifications",
    "Notifications by status: pending, retrying (their receiver has not taken them yet), delivered, refused "
    "(4xx), given_up (after ALERT_GIVE_UP_SECONDS).", ["status"], registry=REGISTRY)

# --- error stream (relay, ws) ---------------------------------------------------------------------------
ERRORS_RELAYED = Counter(
    "panopticon_error_logs_relayed_total", "Error logs published to Redis by the relay.", registry=REGISTRY)
WS_CLIENTS = Gauge("panopticon_ws_clients", "Open error-log WebSocket connections.", registry=REGISTRY)
WS_SENT = Counter("panopticon_ws_messages_sent_total", "Messages sent to WebSocket clients.", registry=REGISTRY)
WS_DROPPED = Counter(
    "panopticon_ws_messages_dropped_total", "Messages dropped for slow WebSocket clients.", registry=REGISTRY)


ERRORS_SKIPPED = Counter(
    "panopticon_error_logs_skipped_total",
    "Messages on the error topic the relay did not publish: too_old (older than ERROR_RELAY_MAX_AGE_SECONDS) "
    "or invalid (not a stored log document; logged with its position).", ["reason"], registry=REGISTRY)
WS_INVALID = Counter(
    "panopticon_ws_invalid_messages_total",
    "Messages on the Redis channel a `ws` hub dropped before fan-out, by the field that was wrong.",
    ["field"], registry=REGISTRY)
WS_HUB_RESTARTS = Counter(
    "panopticon_ws_hub_restarts_total", "Times the hub's subscriber thread died and was started again.",
    registry=REGISTRY)
WS_FEED_UP = Gauge(
    "panopticon_ws_feed_up", "1 while the `ws` hub is subscribed to the Redis channel and its thread runs.",
    registry=REGISTRY)
WS_GAP_FILLS = Counter(
    "panopticon_ws_gap_fills_total",
    "since= reads by outcome: read (from logs-apm), shared (joined another client's read), failed.",
    ["outcome"], registry=REGISTRY)
WS_SUMMARIES = Counter(
    "panopticon_ws_error_group_summaries_total",
    "error-group summaries sent to collapse=1 clients (each stands for the logs of a group since the last one).",
    registry=REGISTRY)
WS_COLLAPSED = Counter(
    "panopticon_ws_collapsed_messages_total",
    "Error logs a collapse=1 client was not sent one by one but counted into its group's next summary.",
    registry=REGISTRY)
WS_GAP_FILL_WAITING = Gauge(
    "panopticon_ws_gap_fills_waiting", "Clients waiting for a gap-fill slot (WS_GAP_FILL_CONCURRENCY).",
    registry=REGISTRY)


StartResponse = Callable[..., Any]


def metrics_app(tokens: tuple[str, ...]) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app of a metrics port: the registry, behind `Authorization: Bearer` when tokens are set."""
    exposition = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if tokens and not token_ok(environ.get("HTTP_AUTHORIZATION"), tokens):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", 'Bearer realm="panopticon"')])
            return [b"a valid bearer token is required (Authorization: Bearer <token>)\n"]
        body: Iterable[bytes] = exposition(environ, start_response)
        return body

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes are not worth a log line each."""


def serve(port: int, host: str = "127.0.0.1", tokens: tuple[str, ...] = (), process: str = "metrics") -> int:
    """Expose this process's metrics on their own port (bridge, relay); 0 turns it off. Returns the port."""
    if not port:
        return 0
    warning = exposure_warning(f"{process} /metrics", "METRICS_BIND_HOST", host, tokens)
    if warning:
        log.warning(warning)

    class Server(ThreadingWSGIServer):
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                            flags=socket.AI_PASSIVE)[0][0]

    httpd = make_server(host, port, metrics_app(tokens), Server, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    return int(httpd.server_port)
