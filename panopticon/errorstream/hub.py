"""The fan-out of one `ws` process: one Redis subscription, a bounded queue per socket.

    Redis channel --(one subscriber thread)--> Hub.deliver --> ClientQueue (bounded) x N --> socket writers

The subscriber never waits on a socket: it only appends a reference to the shared, pre-encoded frame
to each matching client's queue. A client whose queue is full loses the newest messages and is told
how many (`dropped`) when it catches up; its writer, not the hub, is the one that blocks on a slow
socket, and it gives up after WS_SEND_TIMEOUT_SECONDS. Memory per client is therefore bounded by
WS_CLIENT_QUEUE_SIZE references, whatever the client does.

Every message is checked before fan-out (`protocol.live_message`); one that fails is counted
(`panopticon_ws_invalid_messages_total{field}`) and dropped. The subscriber thread catches what it
expects (Redis errors: resubscribe with backoff) and what it does not (a bug: logged, counted, resubscribe);
should it die anyway, the next request starts it again, and `/readyz` says `feed: down` meanwhile.

The hub also remembers the last WS_DEDUPE_WINDOW ids in publish order: a repeat (the error topic is
at-least-once) is dropped, and a reconnecting client's cursor is placed exactly in that order, even
when it came from another `ws` process or from before a restart (`RecentWindow`).
After a Redis outage the hub asks `catch_up` for what was stored meanwhile, so a message the relay
published while this process was not subscribed still reaches the sockets.

A `collapse=1` client's subscriber holds a `Collapser`: the hub queues only the first occurrence of each
error group (and logs without a group); every other occurrence only adds one to its group's count, so a storm
costs such a client a counter, never a queue slot. Its writer sends at most one `error-group` summary per group
per WS_COLLAPSE_INTERVAL_SECONDS, with the count since the last one.

Alerts (`alert` events, published by the alert tasks on the same channel) go to every client whose service /
environment filter does not exclude them; they take no place in the publish order (they have no cursor).

Threads here are greenlets in the `ws` process (gunicorn's gevent worker patches `threading`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from panopticon import telemetry
from panopticon.errorstream.protocol import (
    ClientFilter,
    InvalidMessage,
    LiveMessage,
    live_message,
    notice,
    parse_since,
    text_frame,
)
from panopticon.model.times import iso_ms

log = logging.getLogger(__name__)

# Logs stored up to this long before the last one seen may still be published after it (two worker
# tasks finish in the opposite order); catch-up and gap fill look back this far and drop what was sent.
REORDER_MARGIN_MS = 60_000
# During a burst the subscriber reads from one buffer without blocking, so it yields to the socket
# writers every few messages, and at once when some queue is half full: a client that keeps up must
# never overflow just because its writer was not scheduled.
YIELD_EVERY = 16


class ClientQueue:
    """Bounded FIFO of one client. Full: the new message is dropped and counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[LiveMessage] = deque()
        self._dropped = 0
        self._lock = threading.Lock()

    def offer(self, message: LiveMessage) -> bool:
        """Append; True when the queue was empty before (the writer may be asleep and needs waking)."""
        with self._lock:
            if len(self._items) >= self.limit:
                self._dropped += 1
                return False
            self._items.append(message)
            return len(self._items) == 1

    def take(self) -> tuple[list[LiveMessage], int]:
        """Everything queued, and how many were dropped since the last take."""
        with self._lock:
            items, dropped = list(self._items), self._dropped
            self._items.clear()
            self._dropped = 0
            return items, dropped

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Group:
    """One error group as a collapse client has seen it."""

    last_summary_s: float  # when its first occurrence or its last summary went out
    count: int = 0  # occurrences since then
    first_ms: int = 0  # ingested_at of the first and last of them
    last: LiveMessage | None = None


class Collapser:
    """`collapse=1`: a group's first occurrence is sent, then at most one summary per group per interval.

    `admit` runs in the hub thread for each wanted message: True means "send it" (a group seen for the first
    time on this connection, or a log without a group), False "counted". `due` runs in the socket's writer and
    returns the summaries whose interval has passed. At most `max_groups` groups are remembered; the one idle
    the longest is forgotten first (it would be sent again, as a first occurrence, if it came back).
    While a gap fill is read, the ids it may repeat are remembered (`tracking`), so a log is counted once.
    """

    def __init__(self, interval_s: float, *, clock: Callable[[], float] = time.time, max_groups: int = 10_000) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.max_groups = max_groups
        self.groups: OrderedDict[str, _Group] = OrderedDict()
        self.counted = 0
        self.tracking = False
        self.seen_ids: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, message: LiveMessage) -> bool:
        with self._lock:
            if self.tracking:
                if message.doc_id in self.seen_ids:
                    return False  # the live feed and the gap fill both had it: it was handled once already
                self.seen_ids.add(message.doc_id)
            fingerprint = message.fingerprint
            if fingerprint is None:
                return True
            group = self.groups.get(fingerprint)
            if group is None:
                self.groups[fingerprint] = _Group(self.clock())
                while len(self.groups) > self.max_groups:
                    self.groups.popitem(last=False)
                return True
            self.groups.move_to_end(fingerprint)
            if not group.count:
                group.first_ms = message.ingested_ms
            group.count += 1
            group.last = message
            self.counted += 1
            return False

    def due(self) -> list[bytes]:
        """The `error-group` summaries due now, as frames."""
        now = self.clock()
        frames = []
        with self._lock:
            for fingerprint, group in self.groups.items():
                if group.count and now - group.last_summary_s >= self.interval_s and group.last is not None:
                    last = group.last
                    frames.append(text_frame(notice(
                        "error-group", fingerprint=fingerprint, count=group.count, service_name=last.service,
                        environment=last.environment, message=last.message, id=last.doc_id, cursor=last.cursor,
                        first_ingested_at=iso_ms(group.first_ms), last_ingested_at=iso_ms(last.ingested_ms),
                        at=iso_ms(int(now * 1000)), interval_s=self.interval_s)))
                    group.count, group.last, group.last_summary_s = 0, None, now
        return frames

    def stop_tracking(self) -> None:
        with self._lock:
            self.tracking = False
            self.seen_ids.clear()


@dataclass(eq=False)
class Subscriber:
    """One socket's side of the hub: its filter, its queue, and the event that wakes its writer."""

    filter: ClientFilter
    queue: ClientQueue
    wake: threading.Event = field(default_factory=threading.Event)
    collapser: Collapser | None = None

    def offer(self, message: LiveMessage) -> bool:
        """Queue the message if wanted; True when the queue is now at least half full."""
        if message.kind == "alert":
            wanted = self.filter.wants_alert(message.service, message.environment)
        else:
            wanted = self.filter.matches(message.service, message.environment, message.level_num,
                                         message.fingerprint)
            if wanted and self.collapser is not None and not self.collapser.admit(message):
                wanted = False  # counted for its group's next summary
                telemetry.WS_COLLAPSED.inc()
        if wanted and self.queue.offer(message):
            self.wake.set()
        return len(self.queue) * 2 >= self.queue.limit


class RecentWindow:
    """The last `size` error logs in publish order (the order every subscriber of the channel receives),
    numbered; what places a reconnecting client's cursor exactly.

    Publish order is one order for every `ws` process: Redis hands each PUBLISH to all subscribers in
    the order it ran them. A process that starts late learns the recent part of it from the relay's
    list (`seed`); those entries are `known` but not yet delivered here, so a copy that arrives on the
    channel afterwards is still delivered once, without taking a new number.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._seq: OrderedDict[str, int] = OrderedDict()  # doc id -> position, oldest first
        self._undelivered: set[str] = set()  # seeded from the relay's list, not delivered by this process
        self.last_seq = 0
        self.last_ingested_ms: int | None = None

    def add(self, message: LiveMessage) -> bool:
        """Remember the message; False when this process delivered its id already (a repeat)."""
        doc_id = message.doc_id
        if doc_id in self._seq:
            if doc_id not in self._undelivered:
                return False
            self._undelivered.discard(doc_id)
        else:
            self._append(doc_id)
        if self.last_ingested_ms is None or message.ingested_ms > self.last_ingested_ms:
            self.last_ingested_ms = message.ingested_ms
        return True

    def seed(self, doc_ids: Iterable[str]) -> int:
        """Learn positions published before this process subscribed (oldest first); only into an empty window,
        where the numbering cannot be out of order. Returns how many were learnt."""
        if self._seq:
            return 0
        for doc_id in doc_ids:
            if doc_id not in self._seq:
                self._append(doc_id)
                self._undelivered.add(doc_id)
        return len(self._seq)

    def _append(self, doc_id: str) -> None:
        self.last_seq += 1
        self._seq[doc_id] = self.last_seq
        while len(self._seq) > self.size:
            self._undelivered.discard(self._seq.popitem(last=False)[0])

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._seq and doc_id not in self._undelivered

    def position(self, doc_id: str | None) -> int | None:
        """The publish position of `doc_id`, or None when it is not (or no longer) known here."""
        return self._seq.get(doc_id) if doc_id is not None else None

    def published_by(self, doc_id: str, position: int) -> bool:
        """Was `doc_id` published at or before `position` (so a client at that cursor has it)?"""
        seq = self._seq.get(doc_id)
        return seq is not None and seq <= position


CatchUp = Callable[[int], Iterable[LiveMessage]]
RECENT_ALERTS = 1000  # alert ids remembered to drop repeats (a task retried after publishing)
LOG_EVERY = 1000  # after the first 10 invalid messages, one line per this many (a flood must not flood the log)


class Hub:
    def __init__(self, redis_url: str, channel: str, *, window: int, catch_up: CatchUp | None = None,
                 order_key: str | None = None, max_bytes: int = 4 * 1024 * 1024,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self.order_key = order_key
        self.recent = RecentWindow(window)
        self.catch_up = catch_up
        self.max_bytes = max_bytes
        self.clock = clock
        self.subscribers: set[Subscriber] = set()
        self.subscribed = False
        self.alerts = 0
        self._recent_alerts: OrderedDict[str, None] = OrderedDict()
        self.delivered = 0
        self.repeats = 0
        self.invalid = 0
        self.restarts = 0
        self.seeded = 0
        self.pressure = False  # some queue was half full after the last delivery
        self.placed = threading.Event()  # set once the publish order is learnt (or cannot be): cursors place
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._running = True

    # --- clients ------------------------------------------------------------------------------------
    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    @property
    def feed_up(self) -> bool:
        """Subscribed, and the thread that reads the subscription is alive."""
        return self.subscribed and self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, int | bool | str]:
        return {"feed": "up" if self.feed_up else "down", "subscribed": self.subscribed,
                "clients": len(self.subscribers), "delivered": self.delivered, "alerts": self.alerts,
                "repeats": self.repeats,
                "invalid": self.invalid, "restarts": self.restarts, "seeded": self.seeded,
                "queued": sum(len(s.queue) for s in list(self.subscribers))}

    # --- fan-out ------------------------------------------------------------------------------------
    def deliver(self, message: LiveMessage) -> bool:
        """Queue one message for every subscriber that wants it; False for a repeat."""
        if message.kind == "alert":
            return self._deliver_alert(message)
        if not self.recent.add(message):
            self.repeats += 1
            return False
        self.delivered += 1
        pressure = False
        for subscriber in list(self.subscribers):
            pressure |= subscriber.offer(message)
        self.pressure = pressure
        return True

    def _deliver_alert(self, message: LiveMessage) -> bool:
        if message.doc_id in self._recent_alerts:
            self.repeats += 1
            return False
        self._recent_alerts[message.doc_id] = None
        while len(self._recent_alerts) > RECENT_ALERTS:
            self._recent_alerts.popitem(last=False)
        self.alerts += 1
        for subscriber in list(self.subscribers):
            subscriber.offer(message)
        return True

    def deliver_raw(self, raw: bytes) -> None:
        """Check, then fan out: a message that fails a check is counted by field and dropped."""
        try:
            message = live_message(raw, max_bytes=self.max_bytes, now_ms=int(self.clock() * 1000), alerts=True)
        except InvalidMessage as exc:
            self._reject(exc.field, str(exc), raw)
            return
        self.deliver(message)

    def _reject(self, field_name: str, problem: str, raw: bytes) -> None:
        self.invalid += 1
        telemetry.WS_INVALID.labels(field_name).inc()
        if self.invalid <= 10 or self.invalid % LOG_EVERY == 0:
            log.warning("dropped a message on %s that is not a valid error-log envelope (%s; %d so far): %r",
                        self.channel, problem, self.invalid, raw[:120])

    # --- the subscription ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the subscriber once per process (on the first request, after gevent has patched); start
        it again if it died, which only a bug can make it do (`_run` catches everything it expects)."""
        with self._start_lock:
            if self._thread is not None and not self._thread.is_alive() and self._running:
                self.restarts += 1
                telemetry.WS_HUB_RESTARTS.inc()
                log.error("the error hub's thread had died; starting it again (restart %d)", self.restarts)
                self._set_subscribed(False)
                self._thread = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="error-hub", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._running = False

    def _run(self) -> None:
        backoff = 0.2
        outages = 0
        while self._running:
            try:
                client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3, socket_keepalive=True,
                                              health_check_interval=15)
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # untyped in redis-py
            except (redis.RedisError, OSError, ValueError) as exc:
                log.error("cannot build the redis subscription (%s); retrying", exc)
                time.sleep(5.0)
                continue
            try:
                pubsub.subscribe(self.channel)
                self._set_subscribed(True)
                log.info("subscribed to %s", self.channel)
                self._seed(client)
                if outages:
                    self._catch_up()
                backoff = 0.2
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                if self.subscribed:
                    log.warning("redis subscription lost (%s); resubscribing", exc)
                outages += 1
                self._set_subscribed(False)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # noqa: BLE001 - a bug must cost a resubscription, never the feed for good
                log.exception("the error hub failed; resubscribing")
                self.restarts += 1
                telemetry.WS_HUB_RESTARTS.inc()
                outages += 1
                self._set_subscribed(False)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._set_subscribed(False)
                pubsub.close()
                client.close()

    def _set_subscribed(self, value: bool) -> None:
        self.subscribed = value
        telemetry.WS_FEED_UP.set(1 if value else 0)

    def _seed(self, client: redis.Redis) -> None:
        """Learn the recent publish order from the relay's list, once, so cursors from before this process
        started are placed exactly. A missing list (Redis restarted empty) leaves those to the time."""
        if self.order_key is None or self.recent.last_seq:
            self.placed.set()
            return
        entries = client.lrange(self.order_key, 0, -1)
        ids = []
        for entry in entries:  # type: ignore[union-attr]  # a list with the sync client
            try:
                since = parse_since(entry.decode())
            except (ValueError, UnicodeDecodeError):
                continue
            if since.doc_id is not None:
                ids.append(since.doc_id)
        self.seeded = self.recent.seed(ids)
        self.placed.set()
        log.info("learnt the publish order of the last %d error logs from %s", self.seeded, self.order_key)

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        since_yield = 0
        while self._running:
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            if message["type"] == "message":
                self.deliver_raw(message["data"])
                since_yield += 1
                if since_yield >= YIELD_EVERY or self.pressure:
                    since_yield = 0
                    time.sleep(0)  # let the socket writers run (a greenlet switch under gevent)

    def _catch_up(self) -> None:
        """After an outage: deliver what was stored since the last message seen (repeats are dropped)."""
        last = self.recent.last_ingested_ms
        if self.catch_up is None or last is None:
            return
        count = 0
        try:
            for message in self.catch_up(last - REORDER_MARGIN_MS):
                count += self.deliver(message)
        except Exception:  # noqa: BLE001 - the live feed goes on; the client's since= still fills gaps
            log.exception("catch-up after the redis outage failed")
            return
        log.info("caught up %d error logs stored during the redis outage", count)
