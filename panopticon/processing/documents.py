"""Build the documents we store from messages that already passed validation.

Kept apart from the schemas so the shape of `traces-apm` / `logs-apm` documents is readable in one
place, and so the derived fields (is_request, endpoint, is_error, duration_bucket) that the rollup and
query code rely on are computed once, at ingest, by one rule.
"""

from __future__ import annotations

import time
from typing import Any

from panopticon.rollup.histogram import bucket_index

# 2000-01-01T00:00:00Z: anything earlier is a producer bug (often epoch seconds sent as milliseconds).
MIN_TIME_MS = 946_684_800_000
MAX_FUTURE_MS = 86_400_000


def iso_ms(epoch_ms: float) -> str:
    """Format epoch milliseconds as `2024-05-01T12:00:00.123Z`, the one time format we store.

    One fixed format (UTC, milliseconds, Z) keeps documents comparable as strings and avoids the
    engine guessing a format. Sub-millisecond precision is dropped here but kept in duration_ms.
    """
    seconds, millis = divmod(int(epoch_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def span_document(span: dict[str, Any], start_ms: float, end_ms: float, duration_ms: float,
                  now_ms: int) -> dict[str, Any]:
    """The `traces-apm` document for a validated span (see the message contract in MISSION.md).

    `span` is the loaded SpanSchema dict: http members arrive flattened as http_method / http_route /
    http_status_code.
    """
    parent = span["parent_span_id"]
    kind = span["kind"]
    method, route, status_code = span["http_method"], span["http_route"], span["http_status_code"]
    start_iso = iso_ms(start_ms)
    document: dict[str, Any] = {
        "@timestamp": start_iso,
        "trace_id": span["trace_id"],
        "span_id": span["span_id"],
        "parent_span_id": parent,
        "service_name": span["service_name"],
        "environment": span["environment"],
        "name": span["name"],
        "kind": kind,
        "status": span["status"],
        "start_time": start_iso,
        "end_time": iso_ms(end_ms),
        "duration_ms": duration_ms,
    }
    # No http object when the producer sent none, or one with no known member set.
    if method is not None or route is not None or status_code is not None:
        document["http"] = {"method": method, "route": route, "status_code": status_code}
    document["attributes"] = span["attributes"]
    document["is_root"] = parent is None
    # The contract: a request is a SERVER span, or a root span when the producer gave no kind.
    document["is_request"] = kind == "SERVER" or (kind is None and parent is None)
    document["endpoint"] = route or span["name"]
    document["is_error"] = span["status"] == "ERROR" or (status_code is not None and status_code >= 500)
    document["duration_bucket"] = bucket_index(duration_ms)
    document["ingested_at"] = iso_ms(now_ms)
    return document


def log_document(log: dict[str, Any], timestamp_ms: float, level_num: int, now_ms: int,
                 kafka: dict[str, Any]) -> dict[str, Any]:
    """The `logs-apm` document for a validated log line."""
    timestamp = iso_ms(timestamp_ms)
    return {
        "@timestamp": timestamp,
        "timestamp": timestamp,
        "service_name": log["service_name"],
        "environment": log["environment"],
        "level": log["level"],
        "level_num": level_num,
        "message": log["message"],
        "trace_id": log["trace_id"],
        "span_id": log["span_id"],
        "attributes": log["attributes"],
        "event_id": log["event_id"],
        "ingested_at": iso_ms(now_ms),
        "kafka": kafka,
    }
