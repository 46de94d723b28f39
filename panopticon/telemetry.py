"""Every Prometheus metric Panopticon exports, listed once.

Each process serves its own registry: `web`, `ws` and `otlp` at `/metrics` on their own port, the bridge
and the relay on a small HTTP server of their own (BRIDGE_METRICS_PORT, RELAY_METRICS_PORT). The
bridge sees the outcome of every bulk_index task, so the ingest metrics (item outcomes, batch sizes,
hand-off latency) are counted there, once, rather than in each worker child; Celery task runtimes
come from Flower's own `/metrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# --- ingest (bridge) ----------------------------------------------------------------------------------
MESSAGES_CONSUMED = Counter(
    "panopticon_messages_consumed_total", "Kafka messages read by the bridge.", ["stream"], registry=REGISTRY)
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
    "panopticon_rollup_watermark_seconds", "Unix time up to which rollups are complete (read at scrape).",
    registry=REGISTRY)
ROLLUP_LAG = Gauge(
    "panopticon_rollup_lag_seconds", "Now minus the rollup watermark (read at scrape).", registry=REGISTRY)

# --- error stream (relay, ws) ---------------------------------------------------------------------------
ERRORS_RELAYED = Counter(
    "panopticon_error_logs_relayed_total", "Error logs published to Redis by the relay.", registry=REGISTRY)
WS_CLIENTS = Gauge("panopticon_ws_clients", "Open error-log WebSocket connections.", registry=REGISTRY)
WS_SENT = Counter("panopticon_ws_messages_sent_total", "Messages sent to WebSocket clients.", registry=REGISTRY)
WS_DROPPED = Counter(
    "panopticon_ws_messages_dropped_total", "Messages dropped for slow WebSocket clients.", registry=REGISTRY)


def serve(port: int) -> None:
    """Expose this process's metrics on their own port (bridge, relay); 0 turns it off."""
    if port:
        start_http_server(port, addr="0.0.0.0", registry=REGISTRY)
