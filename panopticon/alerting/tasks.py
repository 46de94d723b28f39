"""Celery tasks of alerting, on CELERY_ALERTS_QUEUE (the `alerts` process): thin wrappers over `run_evaluation`
and `deliver`, where the work (and what the tests call) is.

One evaluation at a time: a run claims `alert-evaluation` in `panopticon-state` with a compare-and-set, and a
second one (another beat, a redelivered task) that finds it claimed, or finds the last run younger than half an
interval, does nothing. Its writes -- every rule's state, the changes, a delivery record per change and target
-- are one bulk request; the deliveries are then handed to `alert_deliver`, one task each, so a slow or absent
receiver never holds the next evaluation up.

A delivery is sent only while its record says `pending` or `retrying`, and marked `delivered`, `refused` (the
receiver answered 4xx, or is no longer in the file) or `given_up` (ALERT_GIVE_UP_SECONDS after the change)
when it ends; a receiver that does not answer, or answers 408, 429 or 5xx, is tried again after
ALERT_RETRY_FIRST_SECONDS, doubling up to ALERT_RETRY_MAX_SECONDS. Each run also hands off again deliveries
whose task was lost (pending or retrying, untouched for longer than the broker would hold a task).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import orjson
import redis
from celery import Task, current_app, shared_task

from panopticon import flow
from panopticon.alert_rules import WEBSOCKET, Rule, RuleSet
from panopticon.alerting import notify
from panopticon.alerting.state import RuleState, step
from panopticon.errorstream.protocol import alert_envelope
from panopticon.exceptions import PanopticonError
from panopticon.model.times import iso_ms, iso_to_ms, now_ms
from panopticon.query.alerts import (
    EVALUATION_ID,
    Reading,
    change_id,
    delivery_id,
    evaluate,
    read_states,
    sample_traces,
    state_id,
)
from panopticon.query.deadline import Deadline
from panopticon.rollup.job import check_stored
from panopticon.settings import Settings
from panopticon.storage import ALERTS, STATE, SearchStore, open_store

log = logging.getLogger(__name__)

SOFT_LIMIT_SECONDS = 110
HARD_LIMIT_SECONDS = 120  # no run writes after this: the worker kills it
FINAL = ("delivered", "refused", "given_up")
LOST_AFTER_MS = 900_000  # a delivery untouched this long had its task lost (the broker redelivers after 720 s)
SWEEP_LIMIT = 200

Enqueue = Callable[[str], None]
Publish = Callable[[bytes], object]


# --- documents ----------------------------------------------------------------------------------------
def _ms(value: Any) -> int | None:
    return iso_to_ms(value) if isinstance(value, str) else None


def state_of(document: dict[str, Any] | None) -> RuleState:
    if not document:
        return RuleState()
    return RuleState(document.get("state", "inactive"), _ms(document.get("since")), _ms(document.get("active_since")),
                     int(document.get("seq", 0)), document.get("value"), _ms(document.get("evaluated_at")),
                     document.get("detail") or {})


def _scope(rule: Rule) -> dict[str, Any]:
    return {"rule": rule.name, "rule_type": rule.type, "threshold": rule.threshold, "comparison": rule.comparison,
            "severity": rule.severity, "service_name": rule.service, "environment": rule.environment,
            "endpoint": rule.endpoint, "labels": dict(rule.labels), "receivers": list(rule.receivers)}


def state_document(rule: Rule, state: RuleState, now: int) -> dict[str, Any]:
    return {"kind": "state", **_scope(rule), "state": state.state,
            "since": iso_ms(state.since_ms) if state.since_ms is not None else None,
            "active_since": iso_ms(state.active_since_ms) if state.active_since_ms is not None else None,
            "evaluated_at": iso_ms(state.evaluated_ms) if state.evaluated_ms is not None else None,
            "value": state.value, "seq": state.seq, "detail": state.detail, "updated_at": iso_ms(now)}


def change_document(rule: Rule, state: RuleState, previous: str, at: int, reading: Reading, traces: list[str],
                    settings: Settings) -> dict[str, Any]:
    detail = {**reading.detail, "sample_trace_ids": traces} if traces else dict(reading.detail)
    return {"kind": "change", **_scope(rule), "change_id": change_id(rule.name, state.seq), "seq": state.seq,
            "state": state.state, "previous": previous, "at": iso_ms(at),
            "active_since": iso_ms(state.active_since_ms) if state.active_since_ms is not None else None,
            "value": reading.value, "summary": rule.summary,
            "description": notify.describe(rule, state.state, reading.value), "detail": detail,
            "links": notify.links(settings, rule, at, traces), "created_at": iso_ms(at)}


def delivery_document(change: str, rule: str, target: str, at: int) -> dict[str, Any]:
    return {"kind": "delivery", "change_id": change, "rule": rule, "target": target, "status": "pending",
            "attempts": 0, "next_attempt_at": iso_ms(at), "created_at": iso_ms(at), "updated_at": iso_ms(at)}


# --- evaluation -----------------------------------------------------------------------------------------
def _claim(store: SearchStore, now: int) -> tuple[dict[str, Any], str | None]:
    """(the evaluation record, why this run must not evaluate: None when it claimed the run)."""
    index = store.name(STATE)
    source, version = store.get_versioned(index, EVALUATION_ID)
    record = dict(source or {})
    interval_ms = store.settings.alert_interval_seconds * 1000
    if record.get("running") and now - int(record.get("claimed_ms", 0)) < HARD_LIMIT_SECONDS * 1000:
        return record, "another evaluation is running"
    if now - int(record.get("at_ms", 0)) < interval_ms / 2:
        return record, "the last evaluation is younger than half an interval"
    claimed = {**record, "running": True, "claimed_ms": now, "updated_at": iso_ms(now)}
    if not store.put_if(index, EVALUATION_ID, claimed, version, refresh=True):
        return record, "another evaluation claimed this run"
    return claimed, None


def run_evaluation(store: SearchStore, rules: RuleSet, *, enqueue: Enqueue, now: int | None = None) -> dict[str, Any]:
    """Evaluate every rule at `now`, store what changed, hand the notifications off. Returns the run's figures."""
    now = now if now is not None else now_ms()
    if not rules.rules:
        return {"rules": 0}
    record, skipped = _claim(store, now)
    if skipped:
        log.info("alert evaluation skipped: %s", skipped)
        return {"skipped": skipped}
    started, cpu = time.perf_counter(), time.process_time()
    figures: dict[str, Any] = {"rules": len(rules.rules), "at": iso_ms(now)}
    try:
        figures.update(_evaluate_and_store(store, rules, now, enqueue))
    finally:
        figures["seconds"] = round(time.perf_counter() - started, 3)
        figures["cpu_seconds"] = round(time.process_time() - cpu, 3)
        store.put(store.name(STATE), EVALUATION_ID, {**record, "running": False, "at_ms": now, "last_run": figures,
                                                     "updated_at": iso_ms(now_ms())}, refresh=True)
    log.info("alert evaluation: %s", figures)
    return figures


def _evaluate_and_store(store: SearchStore, rules: RuleSet, now: int, enqueue: Enqueue) -> dict[str, Any]:
    settings = store.settings
    timeout = settings.query_timeout_seconds
    states = read_states(store, Deadline(timeout))
    readings = evaluate(store, rules.rules, at_ms=now, now_ms=now, timeout_s=timeout)
    documents: list[tuple[str, dict[str, Any]]] = []
    handed: list[str] = []
    changes = 0
    for rule in rules.rules:
        reading = readings[rule.name]
        current = state_of(states.get(rule.name))
        new, change = step(current, reading, for_ms=rule.for_ms, at_ms=now)
        documents.append((state_id(rule.name), state_document(rule, new, now)))
        if change is None:
            continue
        changes += 1
        traces: list[str] = []
        if change.state == "firing":
            try:
                traces = sample_traces(store, rule, reading, now, timeout)
            except PanopticonError as exc:  # a notification without samples beats none
                log.warning("no sample traces for %s: %s", rule.name, exc)
        document = change_document(rule, new, change.previous, now, reading, traces, settings)
        documents.append((document["change_id"], document))
        if change.notified:
            for target in (*rule.receivers, WEBSOCKET):
                delivery = delivery_id(document["change_id"], target)
                documents.append((delivery, delivery_document(document["change_id"], rule.name, target, now)))
                handed.append(delivery)
    documents += _removed_rules(rules, states, now, handed)
    index = store.name(ALERTS)
    check_stored(store.index_many(index, [(doc_id, orjson.dumps(body)) for doc_id, body in documents]))
    store.refresh(index)
    lost = _lost_deliveries(store, now)
    for delivery in (*handed, *lost):
        enqueue(delivery)
    firing = sum(1 for _, d in documents if d["kind"] == "state" and d["state"] == "firing")
    return {"changes": changes, "notifications": len(handed), "handed_off_again": len(lost), "firing": firing,
            "not_evaluated": sum(1 for r in readings.values() if r.error)}


def _removed_rules(rules: RuleSet, states: dict[str, dict[str, Any]], now: int,
                   handed: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """A rule taken out of the file while firing (or pending) ends resolved, notified to its receivers, so no
    receiver waits for it forever."""
    names = {rule.name for rule in rules.rules}
    out: list[tuple[str, dict[str, Any]]] = []
    for name, state in states.items():
        if name in names or state.get("state") not in ("firing", "pending"):
            continue
        seq = int(state.get("seq", 0)) + 1
        target_state = "resolved" if state["state"] == "firing" else "inactive"
        change = change_id(name, seq)
        scope = {k: state.get(k) for k in ("rule", "rule_type", "threshold", "comparison", "severity", "service_name",
                                           "environment", "endpoint", "labels", "receivers")}
        out.append((state_id(name), {**state, "state": target_state, "since": iso_ms(now), "active_since": None,
                                     "seq": seq, "updated_at": iso_ms(now)}))
        out.append((change, {"kind": "change", **scope, "change_id": change, "seq": seq, "state": target_state,
                             "previous": state["state"], "at": iso_ms(now), "active_since": None,
                             "value": None, "summary": None, "links": {},
                             "description": f"[{target_state.upper()}] {name}: the rule was removed from "
                                            "ALERT_RULES_FILE",
                             "detail": {"reason": "removed from ALERT_RULES_FILE"}, "created_at": iso_ms(now)}))
        if target_state == "resolved":
            for target in (*(state.get("receivers") or []), WEBSOCKET):
                delivery = delivery_id(change, target)
                out.append((delivery, delivery_document(change, name, target, now)))
                handed.append(delivery)
    return out


def _lost_deliveries(store: SearchStore, now: int) -> list[str]:
    """Deliveries still open whose task has not touched them for LOST_AFTER_MS: their task was lost."""
    answer = store.search(store.name(ALERTS), {
        "size": SWEEP_LIMIT, "track_total_hits": False, "_source": False,
        "query": {"bool": {"filter": [{"term": {"kind": "delivery"}}, {"terms": {"status": ["pending", "retrying"]}},
                                      {"range": {"updated_at": {"lt": now - LOST_AFTER_MS,
                                                                "format": "epoch_millis"}}}]}}})
    return [hit["_id"] for hit in answer.get("hits", {}).get("hits", [])]


# --- delivery -------------------------------------------------------------------------------------------
def deliver(store: SearchStore, rules: RuleSet, delivery: str, *, publish: Publish,
            now: int | None = None) -> tuple[str, float | None]:
    """Send one notification if it is still open; (its status now, seconds until the next try or None)."""
    settings = store.settings
    now = now if now is not None else now_ms()
    index = store.name(ALERTS)
    record = store.get(index, delivery)
    if record is None:
        log.error("no delivery record %s", delivery)
        return "missing", None
    if record.get("status") in FINAL:
        return str(record["status"]), None
    change = store.get(index, record["change_id"])
    if change is None:
        log.error("delivery %s: its change %s is missing", delivery, record["change_id"])
        return "missing", None
    target = record["target"]
    if target == WEBSOCKET:
        try:
            publish(alert_envelope(change["change_id"], notify.alert(change)))
            outcome, what = "delivered", "published"
        except (redis.RedisError, OSError) as exc:
            outcome, what = "retry", f"redis: {exc}"
    else:
        receiver = rules.receiver(target)
        if receiver is None:
            outcome, what = "refused", "the receiver is no longer in ALERT_RULES_FILE"
        else:
            outcome, what = notify.post(receiver, notify.body_for(change, receiver, settings),
                                        settings.alert_webhook_timeout_seconds)
    attempts = int(record.get("attempts", 0)) + 1
    wait = None
    if outcome == "delivered":
        status = "delivered"
    elif outcome == "refused":
        status = "refused"
        log.error("notification %s refused by %s: %s", delivery, target, what)
    elif notify.expired(change["at"], now, settings):
        status = "given_up"
        log.error("notification %s given up after %d attempts (ALERT_GIVE_UP_SECONDS): %s", delivery, attempts, what)
    else:
        status, wait = "retrying", notify.backoff_s(attempts, settings)
        log.warning("notification %s to %s not taken (%s); attempt %d again in %.1fs", delivery, target, what,
                    attempts + 1, wait)
    store.put(index, delivery, {**record, "status": status, "attempts": attempts, "last_error": None
                                if status == "delivered" else what, "updated_at": iso_ms(now),
                                "next_attempt_at": iso_ms(now + int((wait or 0) * 1000))})
    return status, wait


# --- the Celery tasks --------------------------------------------------------------------------------------
@cache
def _resources() -> tuple[Settings, SearchStore, RuleSet, redis.Redis]:
    settings: Settings = current_app.conf.panopticon_settings
    rules: RuleSet = current_app.conf.panopticon_rules
    client = redis.Redis.from_url(settings.redis_url(), socket_timeout=5, socket_connect_timeout=5)
    return settings, open_store(settings, setup=True), rules, client


def _enqueue(delivery: str) -> None:
    settings: Settings = current_app.conf.panopticon_settings
    alert_deliver.apply_async((delivery,), queue=settings.celery_alerts_queue)


@shared_task(name=flow.ALERTS_DUE, acks_late=True, soft_time_limit=SOFT_LIMIT_SECONDS, time_limit=HARD_LIMIT_SECONDS)
def alerts_due() -> dict[str, Any]:
    """What beat sends every ALERT_INTERVAL_SECONDS."""
    _settings, store, rules, _client = _resources()
    return run_evaluation(store, rules, enqueue=_enqueue)


@shared_task(bind=True, name=flow.ALERT_DELIVER, acks_late=True, max_retries=None, soft_time_limit=60, time_limit=90)
def alert_deliver(self: Task, delivery: str) -> str:  # type: ignore[type-arg]  # celery-types: Task is generic
    """One notification; retried with backoff (a new message with a countdown) until its record is final."""
    settings, store, rules, client = _resources()
    status, wait = deliver(store, rules, delivery, publish=lambda body: client.publish(settings.error_channel, body))
    if wait is not None:
        raise self.retry(countdown=wait)
    return status
