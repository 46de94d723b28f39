"""The fan-out of one `ws` process: one Redis subscription, a bounded queue per socket.

    Redis channel --(one subscriber thread)--> Hub.deliver --> ClientQueue (bounded) x N --> socket writers

The subscriber never waits on a socket: it only appends a reference to the shared, pre-encoded frame
to each matching client's queue. A client whose queue is full loses the newest messages and is told
how many (`dropped`) when it catches up; its writer, not the hub, is the one that blocks on a slow
socket, and it gives up after WS_SEND_TIMEOUT_SECONDS. Memory per client is therefore bounded by
WS_CLIENT_QUEUE_SIZE references, whatever the client does.

The hub also remembers the last WS_DEDUPE_WINDOW ids it delivered, in order: a repeat (the error topic
is at-least-once) is dropped, and a reconnecting client's cursor is placed exactly in that order.
After a Redis outage the hub asks `catch_up` for what was stored meanwhile, so a message the relay
published while this process was not subscribed still reaches the sockets.

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

from panopticon.errorstream.protocol import ClientFilter, LiveMessage, live_message

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


@dataclass(eq=False)
class Subscriber:
    """One socket's side of the hub: its filter, its queue, and the event that wakes its writer."""

    filter: ClientFilter
    queue: ClientQueue
    wake: threading.Event = field(default_factory=threading.Event)

    def offer(self, message: LiveMessage) -> bool:
        """Queue the message if wanted; True when the queue is now at least half full."""
        wanted = self.filter.matches(message.service, message.environment, message.level_num)
        if wanted and self.queue.offer(message):
            self.wake.set()
        return len(self.queue) * 2 >= self.queue.limit


class RecentWindow:
    """The last `size` delivered ids, numbered in delivery order; cursor -> number for placing resumes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._cursors: dict[str, int] = {}
        self._order: deque[str] = deque()  # cursors, oldest first, to forget them with their ids
        self.last_seq = 0
        self.last_ingested_ms: int | None = None

    def add(self, message: LiveMessage) -> bool:
        """Remember the message; False when its id was delivered already (a repeat)."""
        if message.doc_id in self._ids:
            return False
        self.last_seq += 1
        self._ids[message.doc_id] = self.last_seq
        self._cursors[message.cursor] = self.last_seq
        self._order.append(message.cursor)
        if self.last_ingested_ms is None or message.ingested_ms > self.last_ingested_ms:
            self.last_ingested_ms = message.ingested_ms
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)
            self._cursors.pop(self._order.popleft(), None)
        return True

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._ids

    def delivered_up_to(self, cursor: str) -> set[str] | None:
        """Ids delivered at or before `cursor`, or None when the cursor is not (or no longer) known here."""
        seq = self._cursors.get(cursor)
        if seq is None:
            return None
        return {doc_id for doc_id, n in self._ids.items() if n <= seq}


CatchUp = Callable[[int], Iterable[LiveMessage]]


class Hub:
    def __init__(self, redis_url: str, channel: str, *, window: int, catch_up: CatchUp | None = None) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self.recent = RecentWindow(window)
        self.catch_up = catch_up
        self.subscribers: set[Subscriber] = set()
        self.subscribed = False
        self.delivered = 0
        self.repeats = 0
        self.invalid = 0
        self.pressure = False  # some queue was half full after the last delivery
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._running = True

    # --- clients ------------------------------------------------------------------------------------
    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def stats(self) -> dict[str, int | bool]:
        return {"subscribed": self.subscribed, "clients": len(self.subscribers), "delivered": self.delivered,
                "repeats": self.repeats, "invalid": self.invalid,
                "queued": sum(len(s.queue) for s in list(self.subscribers))}

    # --- fan-out ------------------------------------------------------------------------------------
    def deliver(self, message: LiveMessage) -> bool:
        """Queue one message for every subscriber that wants it; False for a repeat."""
        if not self.recent.add(message):
            self.repeats += 1
            return False
        self.delivered += 1
        pressure = False
        for subscriber in list(self.subscribers):
            pressure |= subscriber.offer(message)
        self.pressure = pressure
        return True

    def deliver_raw(self, raw: bytes) -> None:
        try:
            message = live_message(raw)
        except (ValueError, KeyError, TypeError) as exc:
            self.invalid += 1
            log.warning("ignoring a message on %s that is not an error-log envelope: %s", self.channel, exc)
            return
        self.deliver(message)

    # --- the subscription ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the subscriber once per process (on the first request, after gevent has patched)."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="error-hub", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._running = False

    def _run(self) -> None:
        backoff = 0.2
        outages = 0
        while self._running:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3, socket_keepalive=True,
                                          health_check_interval=15)
            pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # untyped in redis-py
            try:
                pubsub.subscribe(self.channel)
                self.subscribed = True
                log.info("subscribed to %s", self.channel)
                if outages:
                    self._catch_up()
                backoff = 0.2
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                if self.subscribed:
                    log.warning("redis subscription lost (%s); resubscribing", exc)
                outages += 1
                self.subscribed = False
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.subscribed = False
                pubsub.close()
                client.close()

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
