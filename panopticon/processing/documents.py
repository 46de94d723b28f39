"""Build the documents we store from messages that already passed validation.

Kept apart from the schemas so the shape of `traces-apm` / `logs-apm` documents is readable in one
place, and so the derived fields (is_request, endpoint, is_error, duration_bucket) that the rollup and
query code rely on are computed once, at ingest, by one rule.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from panopticon.model import endpoint_of, is_error_level, is_error_span, is_request
from panopticon.model.histogram import bucket_index
from panopticon.processing import _loader
from panopticon.processing.fingerprint import identify

__all__ = ["iso_ms", "log_document", "span_document"]

# Times as documents hold them: the compiled writer of `model.times.iso_ms`'s format, which
# tests/unit/processing/test_loader.py holds equal to it.
iso_ms = _loader.iso_ms

# A batch is decoded at one `now_ms`: its ingested_at is formatted once.
_ingested_at = lru_cache(maxsize=1)(iso_ms)


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
    document["is_request"] = is_request(kind, parent)
    document["endpoint"] = endpoint_of(route, span["name"])
    document["is_error"] = is_error_span(span["status"], status_code)
    document["duration_bucket"] = bucket_index(duration_ms)
    document["ingested_at"] = _ingested_at(now_ms)
    return document


def log_document(log: dict[str, Any], timestamp_ms: float, level_num: int, now_ms: int,
                 kafka: dict[str, Any]) -> dict[str, Any]:
    """The `logs-apm` document for a validated log line.

    An ERROR/FATAL log also gets its error group (`fingerprint`, see `fingerprint.py`), the exception type
    and the endpoint it happened on when known (`log["endpoint"]`, else the `http.route` / `endpoint`
    attribute). Whether it is the first of its group (`new_group`) is decided when the batch is stored
    (`processing/groups.py`).
    """
    timestamp = iso_ms(timestamp_ms)
    document = {
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
        "ingested_at": _ingested_at(now_ms),
        "kafka": kafka,
    }
    if is_error_level(log["level"]):
        found = identify(log["service_name"], log["message"], log["attributes"], log.get("endpoint"))
        document["fingerprint"] = found.fingerprint
        document["error_type"] = found.error_type
        document["endpoint"] = found.endpoint
    return document
