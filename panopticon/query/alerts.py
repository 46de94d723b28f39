"""Alert rules evaluated with the numbers the routes give, and the states and history kept in `alerts-apm`.

`evaluate` answers every rule for the window [t - window, t) with the query functions the dashboard's routes
use: `metrics.collect` for request rules (rollups for the old part, raw spans for the rest, late windows read
raw) and `errors.collect_groups` / `first_seen_ever` for error-group rules. Rules that ask the same question
share one answer: every request rule without an endpoint and with the same window is one `collect` grouped by
(service, environment); rules with an endpoint share one per (window, service, environment); error-group rules
one per (window, service, environment). 200 rules for 50 services are therefore a handful of engine requests.

`alerts-apm` documents (written by `panopticon.alerting`, read here for the API):
    state:<rule>                 kind=state    the rule's current state, since when, its last value
    change:<rule>:<seq>          kind=change   one state change (the history); seq counts the rule's changes
    delivery:<rule>:<seq>:<to>   kind=delivery one notification of a change to one target, and how it went
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from panopticon.alert_rules import Rule, RuleSet
from panopticon.exceptions import PanopticonError
from panopticon.model.times import iso_ms
from panopticon.query import errors, metrics
from panopticon.query import filters as f
from panopticon.query.deadline import Deadline
from panopticon.query.engine import hits, run_search
from panopticon.query.raw import Key
from panopticon.query.search import Sort, decode_cursor, encode_cursor
from panopticon.query.timeparse import TimeRange
from panopticon.rollup.aggregate import Aggregate
from panopticon.rollup.errors import GroupStats
from panopticon.storage import ALERTS, STATE, TRACES, SearchStore

log = logging.getLogger(__name__)

MAX_LISTED = 10  # fingerprints named in an error rule's detail
EVALUATION_ID = "alert-evaluation"  # in panopticon-state: the last evaluation's claim and figures
SAMPLE_TRACES = 3


@dataclass(frozen=True)
class Reading:
    """One rule at one time: the number compared with the threshold, whether the condition holds, and what
    else is worth saying (requests, errors, the group). `error`: it could not be evaluated (state kept)."""

    value: float | None
    active: bool
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# --- the questions rules share ----------------------------------------------------------------------
def _request_key(rule: Rule) -> tuple[Any, ...]:
    if rule.endpoint is not None:
        return ("endpoint", rule.window_ms, rule.service, rule.environment)
    return ("services", rule.window_ms)


def _error_key(rule: Rule) -> tuple[Any, ...]:
    return ("errors", rule.window_ms, rule.service, rule.environment)


def _merged(rows: dict[Key, Aggregate], keep: Any) -> Aggregate:
    total = Aggregate()
    for key in sorted(rows, key=str):
        if keep(key):
            total.merge(rows[key])
    return total


def _request_reading(rule: Rule, aggregate: Aggregate) -> Reading:
    detail: dict[str, Any] = {"requests": aggregate.requests, "errors": aggregate.errors}
    if rule.type == "latency":
        value = aggregate.percentiles()[rule.percentile]
        detail[rule.percentile] = value
        return Reading(value, value is not None and value > rule.threshold, detail)
    if rule.type == "error_rate":
        value = aggregate.error_rate
        enough = aggregate.requests >= rule.min_requests
        detail["enough_requests"] = enough
        return Reading(value, enough and value is not None and value > rule.threshold, detail)
    per_minute = aggregate.requests / (rule.window_ms / 60_000)
    detail["requests_per_minute"] = per_minute
    return Reading(per_minute, per_minute < rule.threshold, detail)


def _error_reading(rule: Rule, groups: dict[str, GroupStats], firsts: dict[str, int], start_ms: int) -> Reading:
    if rule.type == "new_error_group":
        new = sorted(fp for fp, stats in groups.items() if stats.count and firsts.get(fp, stats.first_seen_ms or 0)
                     >= start_ms)
        samples = [t for fp in new for t in groups[fp].sample_ids(SAMPLE_TRACES)][:SAMPLE_TRACES]
        detail = {"new_groups": new[:MAX_LISTED], "messages": [groups[fp].message for fp in new[:MAX_LISTED]],
                  "sample_trace_ids": samples}
        return Reading(float(len(new)), len(new) > rule.threshold, detail)
    if rule.fingerprint is not None:
        chosen = rule.fingerprint if rule.fingerprint in groups else None
    else:  # the largest group of the scope; ties by fingerprint, so the same data picks the same group
        chosen = min(groups, key=lambda fp: (-groups[fp].count, fp)) if groups else None
    stats = groups.get(chosen) if chosen else None
    count = stats.count if stats else 0
    detail = {"fingerprint": chosen or rule.fingerprint, "message": stats.message if stats else None,
              "sample_trace_ids": stats.sample_ids(SAMPLE_TRACES) if stats else []}
    return Reading(float(count), count > rule.threshold, detail)


def evaluate(store: SearchStore, rules: Iterable[Rule], *, at_ms: int, now_ms: int,
             timeout_s: float) -> dict[str, Reading]:
    """{rule name: Reading} at `at_ms`. A question the engine cannot answer marks its rules with `error` and the
    others are still answered."""
    by_question: dict[tuple[Any, ...], list[Rule]] = {}
    for rule in rules:
        key = _request_key(rule) if rule.type in ("latency", "error_rate", "request_rate") else _error_key(rule)
        by_question.setdefault(key, []).append(rule)
    readings: dict[str, Reading] = {}
    for key, asked in by_question.items():
        try:
            readings.update(_answer(store, key, asked, at_ms, now_ms, Deadline(timeout_s)))
        except PanopticonError as exc:  # the engine or a limit: these rules keep their state this time
            log.warning("alert rules %s not evaluated: %s", ", ".join(r.name for r in asked), exc)
            readings.update({r.name: Reading(None, False, error=str(exc)[:500]) for r in asked})
    return readings


def _answer(store: SearchStore, key: tuple[Any, ...], rules: list[Rule], at_ms: int, now_ms: int,
            deadline: Deadline) -> dict[str, Reading]:
    window_ms = key[1]
    window = TimeRange(at_ms - window_ms, at_ms)
    if key[0] == "services":
        rows, _ = metrics.collect(store, metrics.Scope(), window, interval_ms=None, group_by="service_environment",
                                  deadline=deadline, now_ms=now_ms)
        return {r.name: _request_reading(r, _merged(rows, lambda k, r=r: (r.service is None or k[0] == r.service) and
                                                    (r.environment is None or k[1] == r.environment)))
                for r in rules}
    if key[0] == "endpoint":
        rows, _ = metrics.collect(store, metrics.Scope(key[2], key[3]), window, interval_ms=None, group_by="endpoint",
                                  deadline=deadline, now_ms=now_ms)
        return {r.name: _request_reading(r, rows.get(r.endpoint, Aggregate())) for r in rules}
    width = store.settings.rollup_bucket_minutes * 60_000
    groups, _, mark = errors.collect_groups(store, errors.ErrorScope(key[2], key[3]), window,
                                            interval_ms=errors.trend_interval(window, width), deadline=deadline,
                                            now_ms=now_ms)
    firsts = errors.first_seen_ever(store, sorted(groups), mark, deadline) \
        if any(r.type == "new_error_group" for r in rules) else {}
    return {r.name: _error_reading(r, groups, firsts, window.start_ms) for r in rules}


def sample_traces(store: SearchStore, rule: Rule, reading: Reading, at_ms: int, timeout_s: float) -> list[str]:
    """Trace ids worth opening when a rule fires: the slowest requests (latency), the newest failed ones
    (error rate), the newest occurrences of the group (error rules). None for a request floor."""
    if rule.type in ("new_error_group", "error_group_count"):
        return list(reading.detail.get("sample_trace_ids") or [])[:SAMPLE_TRACES]
    if rule.type == "request_rate":
        return []
    clauses = [f.term("is_request", True), f.time_range("@timestamp", at_ms - rule.window_ms, at_ms),
               f.optional_term("service_name", rule.service), f.optional_term("environment", rule.environment),
               f.optional_term("endpoint", rule.endpoint)]
    if rule.type == "error_rate":
        clauses.append(f.term("is_error", True))
    order = [{"duration_ms": "desc"}] if rule.type == "latency" else [{"@timestamp": "desc"}]
    answer = run_search(store, store.name(TRACES), {
        "query": f.bool_filter(clauses), "size": SAMPLE_TRACES, "_source": ["trace_id"], "track_total_hits": False,
        "sort": [*order, {"trace_id": "asc"}, {"span_id": "asc"}]}, Deadline(timeout_s))
    return list(dict.fromkeys(hit["_source"]["trace_id"] for hit in hits(answer)))


# --- states and history, for the API -------------------------------------------------------------------
def state_id(rule: str) -> str:
    return f"state:{rule}"


def change_id(rule: str, seq: int) -> str:
    return f"change:{rule}:{seq}"


def delivery_id(change: str, target: str) -> str:
    return f"delivery:{change.removeprefix('change:')}:{target}"


def read_states(store: SearchStore, deadline: Deadline) -> dict[str, dict[str, Any]]:
    """{rule: its state document} of every rule that has one."""
    answer = run_search(store, store.name(ALERTS), {"query": f.term("kind", "state"), "size": 10_000,
                                                    "track_total_hits": False}, deadline)
    return {hit["_source"]["rule"]: hit["_source"] for hit in hits(answer)}


def alerts_answer(store: SearchStore, rules: RuleSet, deadline: Deadline) -> dict[str, Any]:
    """Every rule of the file with its current state (inactive when it was never evaluated)."""
    states = read_states(store, deadline)
    items = []
    for rule in rules.rules:
        state = states.get(rule.name) or {}
        items.append({"rule": rule.as_dict(), "state": state.get("state", "inactive"), "since": state.get("since"),
                      "active_since": state.get("active_since"), "evaluated_at": state.get("evaluated_at"),
                      "value": state.get("value"), "detail": state.get("detail") or {}, "changes": state.get("seq", 0)})
    counts = {name: sum(1 for i in items if i["state"] == name) for name in ("inactive", "pending", "firing",
                                                                               "resolved")}
    return {"source": rules.source, "version": rules.digest or None, "total": len(items), "states": counts,
            "items": items, "receivers": [r.as_dict() for r in rules.receivers]}


def change_out(source: dict[str, Any]) -> dict[str, Any]:
    return {"id": change_id(source["rule"], int(source["seq"])), "rule": source["rule"],
            "type": source.get("rule_type"), "state": source["state"], "previous": source.get("previous"),
            "at": source["at"], "active_since": source.get("active_since"), "value": source.get("value"),
            "threshold": source.get("threshold"), "severity": source.get("severity"),
            "service_name": source.get("service_name"), "environment": source.get("environment"),
            "endpoint": source.get("endpoint"), "detail": source.get("detail") or {},
            "links": source.get("links") or {}}


def history_answer(store: SearchStore, window: TimeRange, *, rule: str | None, state: str | None, limit: int,
                   after: list[Any] | None, deadline: Deadline) -> dict[str, Any]:
    """State changes in the range, newest first, paged by `search_after` (at, seq, rule)."""
    body: dict[str, Any] = {
        "query": f.bool_filter([f.term("kind", "change"), f.time_range("at", window.start_ms, window.end_ms),
                                f.optional_term("rule", rule), f.optional_term("state", state)]),
        "sort": [{"at": "desc"}, {"rule": "asc"}, {"seq": "desc"}], "size": limit + 1, "track_total_hits": True}
    if after:
        body["search_after"] = after
    answer = run_search(store, store.name(ALERTS), body, deadline)
    found = hits(answer)
    items, more = found[:limit], len(found) > limit
    total = answer.get("hits", {}).get("total", {})
    return {"from": iso_ms(window.start_ms), "to": iso_ms(window.end_ms),
            "total": int(total.get("value", 0) if isinstance(total, dict) else total),
            "items": [change_out(hit["_source"]) for hit in items],
            "next_cursor": encode_cursor(HISTORY_SORT, items[-1]["sort"]) if more and items else None}


HISTORY_SORT = Sort("at", "desc")


def history_cursor(cursor: str | None) -> list[Any] | None:
    """The `search_after` of a history cursor: (at ms, rule, seq); InvalidParameter when it is not one of ours."""
    if not cursor:
        return None
    values = decode_cursor(cursor, HISTORY_SORT, ["@timestamp", "rule", "kafka.offset"])  # int, text, int
    return values


DELIVERY_STATUSES = ("pending", "retrying", "delivered", "refused", "given_up")


def figures(store: SearchStore, rules: RuleSet, deadline: Deadline) -> dict[str, Any]:
    """What /metrics shows: rules by state, the last evaluation, notifications by status."""
    states = read_states(store, deadline)
    by_state = {name: 0 for name in ("inactive", "pending", "firing", "resolved")}
    for rule in rules.rules:
        by_state[(states.get(rule.name) or {}).get("state", "inactive")] += 1
    answer = run_search(store, store.name(ALERTS), {
        "size": 0, "track_total_hits": False, "query": f.term("kind", "delivery"),
        "aggs": {"status": {"terms": {"field": "status", "size": 10}}}}, deadline)
    deliveries = {name: 0 for name in DELIVERY_STATUSES}
    for bucket in answer.get("aggregations", {}).get("status", {}).get("buckets", []):
        deliveries[bucket["key"]] = int(bucket["doc_count"])
    record = store.get(store.name(STATE), EVALUATION_ID) or {}
    return {"states": by_state, "deliveries": deliveries, "last_at_ms": record.get("at_ms"),
            "last_run": record.get("last_run") or {}}
