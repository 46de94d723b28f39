"""Index templates, mappings and retention policies: what the engine must hold before data arrives.

`logs-apm` and `traces-apm` are data streams (append-only, time-ordered, rolled over by the engine).
`metrics-apm` is NOT a data stream: rollups are rewritten when late spans arrive, and a data stream
only accepts `create`. It is one plain index per month (`metrics-apm-YYYY.MM`), chosen from the
window's own time, so a rollup document always lands on the same index under the same id and can be
overwritten; retention drops whole monthly indices. Queries read the pattern `metrics-apm-*`.
"""

from __future__ import annotations

from typing import Any

from panopticon.flow import ALERTS, EDGES, ERROR_GROUPS, ERRORS, LOGS, METRICS, STATE, TRACES
from panopticon.settings import Settings

__all__ = ["ALERTS", "EDGES", "ERRORS", "ERROR_GROUPS", "LOGS", "METRICS", "STATE", "TRACES", "index_templates",
           "raw_index_settings", "retention_days", "retention_policy_names"]

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
# Every time we store is written by model.times.iso_ms (`2024-05-01T12:00:00.123Z`). A fixed pattern for it comes
# first: the engine parses it without strict_date_optional_time's optional sections, each of which copies the
# parse state (x0.84 of the engine's CPU per document written, bench/results/engine_dates_fa178b2.md). The others
# stay for what queries send (a time without milliseconds, epoch milliseconds). The first also prints
# (docvalue fields, aggregation keys): the same text as strict_date_optional_time, `+01:00` for an offset.
_STORED_TIME = "uuuu-MM-dd'T'HH:mm:ss.SSSXXX"
_DATE = {"type": "date", "format": f"{_STORED_TIME}||strict_date_optional_time||epoch_millis"}
_OPAQUE = {"type": "object", "enabled": False}
# What no route searches is not indexed for search (an inverted index or points), and what no route sorts or
# aggregates on keeps no doc values: each structure costs the engine CPU on every document written. Which
# request uses which field is listed in docs/storage.md; a field whose use changes must change here too.
_SHOWN_DATE = {**_DATE, "index": False, "doc_values": False}  # read back from _source only
_SHOWN_KEYWORD = {**_KEYWORD, "index": False, "doc_values": False}
_SORTED_KEYWORD = {**_KEYWORD, "index": False}  # sorted or aggregated, never filtered
_FILTERED_KEYWORD = {**_KEYWORD, "doc_values": False}  # filtered, never sorted or aggregated

_INDEX_SETTINGS = {
    "number_of_shards": 1,
    # 0 replicas on one node, 1 as soon as a second node joins.
    "auto_expand_replicas": "0-1",
    "refresh_interval": "1s",
}

TRACES_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": _DATE,
        "trace_id": _KEYWORD,
        "span_id": _KEYWORD,
        "parent_span_id": _KEYWORD,
        "service_name": _KEYWORD,
        "environment": _KEYWORD,
        "name": _KEYWORD,
        "kind": _KEYWORD,
        "status": _KEYWORD,
        "start_time": _SHOWN_DATE,
        "end_time": _SHOWN_DATE,
        "duration_ms": {"type": "double"},
        "duration_bucket": {"type": "integer", "index": False},
        "http": {  # only Zipkin's autocomplete aggregates these; tag search runs over _source
            "properties": {
                "method": _SORTED_KEYWORD,
                "route": _SORTED_KEYWORD,
                "status_code": {"type": "integer", "index": False},
            }
        },
        "attributes": _OPAQUE,
        "is_root": {"type": "boolean"},
        "is_request": {"type": "boolean"},
        "is_error": {"type": "boolean"},
        "endpoint": _KEYWORD,
        "ingested_at": _DATE,
    },
}

LOGS_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": _DATE,
        "timestamp": _SHOWN_DATE,
        "service_name": _KEYWORD,
        "environment": _KEYWORD,
        "level": _FILTERED_KEYWORD,
        "level_num": {"type": "byte", "index": False},  # the "level" sort
        # Searched with `match` (all terms, sorted by time): no phrases, no scores, so neither positions nor norms.
        "message": {"type": "text", "index_options": "docs", "norms": False},
        "trace_id": _FILTERED_KEYWORD,
        "span_id": _FILTERED_KEYWORD,
        "event_id": _SORTED_KEYWORD,
        "attributes": _OPAQUE,
        "ingested_at": _DATE,
        # ERROR/FATAL logs only: the error group (processing/fingerprint.py), and whether this log opened it.
        "fingerprint": _KEYWORD,
        "error_type": _SHOWN_KEYWORD,
        "endpoint": _SORTED_KEYWORD,
        "new_group": {"type": "boolean", "index": False, "doc_values": False},
        "kafka": {  # the tie-breaks of log sorts and of search_after
            "properties": {
                "topic": _SORTED_KEYWORD,
                "partition": {"type": "integer", "index": False},
                "offset": {"type": "long", "index": False},
            }
        },
    },
}

METRICS_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": _DATE,
        "key": _KEYWORD,  # the document id, repeated: a unique sort key for paging (search_after)
        "tier": _KEYWORD,
        "scope": _KEYWORD,
        "service_name": _KEYWORD,
        "environment": _KEYWORD,
        "endpoint": _KEYWORD,
        "requests": {"type": "long"},
        "errors": {"type": "long"},
        "duration_sum": {"type": "double"},
        "duration_min": {"type": "double"},
        "duration_max": {"type": "double"},
        "histogram": _OPAQUE,
        "exemplars": _OPAQUE,
        "updated_at": _DATE,
    },
}

# The service map: one document per (tier, caller, callee, window), see panopticon/rollup/edges.py.
EDGES_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": _DATE,
        "key": _KEYWORD,  # the document id, repeated: a unique sort key for paging
        "tier": _KEYWORD,
        "caller": _KEYWORD,
        "caller_environment": _KEYWORD,
        "callee": _KEYWORD,
        "callee_environment": _KEYWORD,
        "callee_kind": _KEYWORD,  # service, database, queue or external
        "calls": {"type": "long"},
        "errors": {"type": "long"},
        "duration_sum": {"type": "double"},
        "duration_min": {"type": "double"},
        "duration_max": {"type": "double"},
        "histogram": _OPAQUE,
        "updated_at": _DATE,
    },
}

_STORED_TEXT = {"type": "text", "index": False}  # kept to show, never searched

ERRORS_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": _DATE,  # the window (or hour) start
        "key": _KEYWORD,  # the document id, repeated: a unique sort key for paging
        "tier": _KEYWORD,
        "fingerprint": _KEYWORD,
        "service_name": _KEYWORD,
        "environment": _KEYWORD,
        "endpoint": _KEYWORD,
        "count": {"type": "long"},
        "first_seen": _DATE,
        "last_seen": _DATE,
        "message": _STORED_TEXT,  # the newest message of the window
        "error_type": _KEYWORD,
        "level": _KEYWORD,
        "samples": _KEYWORD,  # trace ids of the newest occurrences
        "updated_at": _DATE,
    },
}

ERROR_GROUPS_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "fingerprint": _KEYWORD,
        "service_name": _KEYWORD,
        "first_event_id": _KEYWORD,  # the log that opened the group: the one stored with new_group=true
        "first_seen": _DATE,
        "registered_at": _DATE,
        "message": _STORED_TEXT,
        "error_type": _KEYWORD,
    },
}

ALERTS_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "kind": _KEYWORD,  # state (one per rule), change (one per state change), delivery (one per change and target)
        "rule": _KEYWORD,
        "rule_type": _KEYWORD,
        "state": _KEYWORD,
        "previous": _KEYWORD,
        "at": _DATE,
        "since": _DATE,
        "active_since": _DATE,
        "evaluated_at": _DATE,
        "value": {"type": "double"},
        "threshold": {"type": "double"},
        "comparison": _KEYWORD,
        "severity": _KEYWORD,
        "summary": _STORED_TEXT,
        "description": _STORED_TEXT,
        "receivers": _KEYWORD,
        "service_name": _KEYWORD,
        "environment": _KEYWORD,
        "endpoint": _KEYWORD,
        "seq": {"type": "long"},
        "change_id": _KEYWORD,
        "target": _KEYWORD,
        "status": _KEYWORD,
        "attempts": {"type": "integer"},
        "next_attempt_at": _DATE,
        "last_error": _STORED_TEXT,
        "detail": _OPAQUE,
        "links": _OPAQUE,
        "labels": _OPAQUE,
        "created_at": _DATE,
        "updated_at": _DATE,
    },
}

STATE_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {"updated_at": _DATE},
}


def raw_index_settings(settings: Settings) -> dict[str, Any]:
    """What the spans' and logs' indices are given beyond the rest: how soon a write is searchable."""
    return {"refresh_interval": f"{settings.search_refresh_interval_ms}ms"}


def index_templates(settings: Settings, engine: str) -> dict[str, dict[str, Any]]:
    """Composable index templates by name, with this deployment's prefix (ILM is named only on Elasticsearch)."""
    name = settings.data_stream

    def template(pattern: str, mappings: dict[str, Any], *, data_stream: bool, policy: str | None) -> dict[str, Any]:
        index_settings = dict(_INDEX_SETTINGS)
        if data_stream:
            index_settings.update(raw_index_settings(settings))
        if policy:
            index_settings["index.lifecycle.name"] = policy
        body: dict[str, Any] = {
            "index_patterns": [pattern],
            "priority": 200,
            "template": {"settings": index_settings, "mappings": mappings},
            "_meta": {"managed_by": "panopticon"},
        }
        if data_stream:
            body["data_stream"] = {}
        return body

    policies = retention_policy_names(settings) if engine == "elasticsearch" else {}
    return {
        name(LOGS): template(f"{name(LOGS)}*", LOGS_MAPPINGS, data_stream=True, policy=policies.get(LOGS)),
        name(TRACES): template(f"{name(TRACES)}*", TRACES_MAPPINGS, data_stream=True, policy=policies.get(TRACES)),
        name(METRICS): template(f"{name(METRICS)}-*", METRICS_MAPPINGS, data_stream=False, policy=None),
        name(EDGES): template(f"{name(EDGES)}-*", EDGES_MAPPINGS, data_stream=False, policy=None),
        name(ERRORS): template(f"{name(ERRORS)}-*", ERRORS_MAPPINGS, data_stream=False, policy=None),
    }


# Plain indices created at set-up (one each; not time-based): what each holds.
PLAIN_INDICES: dict[str, dict[str, Any]] = {STATE: STATE_MAPPINGS, ERROR_GROUPS: ERROR_GROUPS_MAPPINGS,
                                            ALERTS: ALERTS_MAPPINGS}
DATA_STREAM_MAPPINGS: dict[str, dict[str, Any]] = {LOGS: LOGS_MAPPINGS, TRACES: TRACES_MAPPINGS}


def retention_policy_names(settings: Settings) -> dict[str, str]:
    return {stream: f"{settings.data_stream(stream)}-retention" for stream in (LOGS, TRACES)}


def retention_days(settings: Settings) -> dict[str, int]:
    return {LOGS: settings.logs_retention_days, TRACES: settings.traces_retention_days,
            METRICS: settings.metrics_retention_days, ERRORS: settings.metrics_retention_days}


def ilm_policy(days: int) -> dict[str, Any]:
    """Elasticsearch: roll over daily or at 30 GB, delete `days` after rollover."""
    return {
        "policy": {
            "phases": {
                "hot": {"actions": {"rollover": {"max_age": "1d", "max_primary_shard_size": "30gb"}}},
                "delete": {"min_age": f"{days}d", "actions": {"delete": {}}},
            },
            "_meta": {"managed_by": "panopticon"},
        }
    }


def ism_policy(days: int, index_pattern: str) -> dict[str, Any]:
    """OpenSearch ISM: roll the data stream over daily, delete backing indices older than `days`."""
    return {
        "policy": {
            "description": "panopticon retention",
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": [{"rollover": {"min_index_age": "1d"}}],
                    "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{days}d"}}],
                },
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            "ism_template": [{"index_patterns": [index_pattern], "priority": 100}],
        }
    }
