"""The error-log WebSocket (`ws` process): `create_ws_app(settings)`, served by gunicorn's gevent worker.

A handshake is checked before the upgrade, in this order: Origin (403: only our own origin, loopback
pages while WS_ALLOWED_ORIGINS is empty, and that list; see `security.origin_allowed`), token (401),
query string (400, naming the parameter), capacity (503). An accepted socket then gets, in order:
  1. with `since=`: the ERROR/FATAL logs it missed, read from `logs-apm` (placed exactly by the cursor,
     through a bounded, shared `GapFills`), then `{"event": "caught-up"}`;
  2. the live feed from this process's hub, minus what step 1 already sent (no duplicates at the seam);
  3. `{"event": "dropped", "count": n}` before the next message whenever its queue overflowed;
  4. a ping (protocol ping + `{"event": "ping"}`) after WS_PING_INTERVAL_SECONDS of silence;
  5. `alert` events (alert rules changing state), and with `collapse=1` the first occurrence of each error
     group followed by at most one `error-group` summary per group per WS_COLLAPSE_INTERVAL_SECONDS.
Clients are not expected to send anything; what they send is read, size-capped and ignored.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from flask_sock import Sock
from marshmallow import ValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from panopticon import telemetry
from panopticon.access import token_ok
from panopticon.api.errors import envelope
from panopticon.api.security import origin_allowed
from panopticon.errorstream.gapfill import GapFills, stored_errors
from panopticon.errorstream.hub import REORDER_MARGIN_MS, ClientQueue, Collapser, Hub, Subscriber
from panopticon.errorstream.protocol import (
    PING_FRAME,
    LiveMessage,
    StreamParams,
    notice,
    order_key,
    parse_stream_params,
    text_frame,
)
from panopticon.exceptions import StorageError
from panopticon.settings import Settings, load_or_exit
from panopticon.storage import SearchStore, open_store

log = logging.getLogger(__name__)

WAKE_S = 1.0  # a writer wakes at least this often to read (and cap) what its client sends
MAX_INBOUND_PER_WAKE = 100
WRITE_CHUNK = 256 * 1024
SEARCH_MAX_WINDOW = 10_000
PLACE_WAIT_S = 5.0  # longest a reconnecting client waits for a starting process to learn the publish order


def create_ws_app(settings: Settings | None = None, hub: Hub | None = None) -> Flask:
    settings = settings or load_or_exit()
    app = Flask("panopticon-ws", static_folder=None)
    app.config["PANOPTICON_SETTINGS"] = settings
    # simple-websocket closes a socket with 1009 when one inbound message is larger than this.
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": settings.ws_max_inbound_bytes}
    if hub is None:
        hub = Hub(settings.redis_url(), settings.error_channel, window=settings.ws_dedupe_window,
                  catch_up=lambda since_ms: _catch_up(app, since_ms), order_key=order_key(settings.error_channel),
                  max_bytes=2 * settings.max_message_bytes + 4096)
    app.extensions["panopticon-ws-hub"] = hub
    app.extensions["panopticon-ws-gap-fills"] = GapFills(settings.ws_gap_fill_concurrency)
    sock = Sock(app)
    app.before_request(_check_handshake)
    app.add_url_rule("/healthz", "healthz", _healthz)
    app.add_url_rule("/readyz", "readyz", _readyz)
    app.add_url_rule("/metrics", "metrics", _metrics)

    @sock.route(settings.ws_path)  # type: ignore[untyped-decorator]  # flask-sock is untyped
    def error_logs(ws: Any) -> None:
        ClientStream(ws, hub, settings, g.stream_params, app).run()

    return app


def _hub() -> Hub:
    hub: Hub = current_app.extensions["panopticon-ws-hub"]
    return hub


_STORE_LOCK = threading.Lock()


def _store(app: Flask) -> SearchStore:
    """The process's store for gap fills and catch-up, opened on first use (the engine may be down at start)."""
    with _STORE_LOCK:
        store: SearchStore | None = app.extensions.get("panopticon-ws-store")
        if store is None:
            store = app.extensions["panopticon-ws-store"] = open_store(app.config["PANOPTICON_SETTINGS"])
        return store


def _catch_up(app: Flask, since_ms: int) -> list[LiveMessage]:
    settings: Settings = app.config["PANOPTICON_SETTINGS"]
    limit = min(settings.ws_dedupe_window, SEARCH_MAX_WINDOW)
    return stored_errors(_store(app), settings, since_ms, None, limit)[0]


def _healthz() -> Response:
    """The process answers (200 even when the feed is down; `feed` says which)."""
    _hub().start()
    return jsonify(status="ok", **_hub().stats())


def _readyz() -> tuple[Response, int]:
    """503 while the live feed is down: not subscribed to Redis, or the hub's thread not running."""
    hub = _hub()
    hub.start()
    ready = hub.feed_up
    return jsonify(status="ok" if ready else "unavailable", **hub.stats()), (200 if ready else 503)


def _metrics() -> Response:
    """Behind the same tokens as web's /metrics (the health routes stay open for probes)."""
    tokens = current_app.config["PANOPTICON_SETTINGS"].api_auth_tokens
    if tokens and not token_ok(request.headers.get("Authorization"), tokens):
        return _refuse(401, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)")
    return Response(generate_latest(telemetry.REGISTRY), mimetype=CONTENT_TYPE_LATEST)


# --- the handshake ----------------------------------------------------------------------------------
def _refuse(status: int, code: str, message: str, parameter: str | None = None) -> Response:
    response = envelope(status, code, message, parameter)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="panopticon"'
    return response


def _invalid(exc: ValidationError) -> Response:
    """400 naming the first wrong parameter and saying what was wrong with each."""
    problems = exc.messages if isinstance(exc.messages, dict) else {"query": exc.messages}
    text = "; ".join(f"{name}: {' '.join(map(str, why if isinstance(why, list) else [why]))}"
                     for name, why in sorted(problems.items()))
    return _refuse(400, "invalid_parameter", text, sorted(problems)[0])


def _authorised(tokens: tuple[str, ...]) -> bool:
    """Browsers cannot set headers on a WebSocket, so `?token=` is accepted as well as the Bearer header."""
    if not tokens:
        return True
    header = request.headers.get("Authorization")
    if header:
        return token_ok(header, tokens)
    query_token = request.args.get("token")
    return bool(query_token) and token_ok(f"Bearer {query_token}", tokens)


def _check_handshake() -> Response | None:
    settings: Settings = current_app.config["PANOPTICON_SETTINGS"]
    hub = _hub()
    hub.start()
    if request.path != settings.ws_path:
        return None
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, settings.ws_allowed_origins, own_ports=(settings.api_port,)):
        log.info("refused a websocket from origin %r (Host %r)", origin, request.host)
        return _refuse(403, "origin_not_allowed",
                       f"Origin {origin!r} is not this server's own origin and not in WS_ALLOWED_ORIGINS")
    if not _authorised(settings.api_auth_tokens):
        return _refuse(401, "unauthorized", "a valid token is required (Authorization: Bearer <token> or ?token=)")
    try:
        g.stream_params = parse_stream_params(request.args.to_dict(flat=True))
    except ValidationError as exc:
        return _invalid(exc)
    if len(hub.subscribers) >= settings.ws_max_clients:
        return _refuse(503, "too_many_clients", f"this process holds WS_MAX_CLIENTS={settings.ws_max_clients}")
    # Frames are encoded once and shared by every socket, so no per-socket compression.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    return None


# --- one socket -------------------------------------------------------------------------------------
class SlowClient(Exception):
    """The socket accepted nothing for WS_SEND_TIMEOUT_SECONDS."""


def _send_deadline(seconds: float) -> contextlib.AbstractContextManager[object]:
    """A deadline on a blocking write: gevent's Timeout in the `ws` process; none under plain threads."""
    try:
        from gevent import Timeout
        from gevent.monkey import is_module_patched
    except ImportError:  # pragma: no cover - gevent is a dependency
        return contextlib.nullcontext()
    return Timeout(seconds, SlowClient) if is_module_patched("socket") else contextlib.nullcontext()


class LockedSocket:
    """The socket with one writer at a time: simple-websocket's reader also writes (pongs, close replies)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def send_within(self, data: bytes, seconds: float) -> None:
        # The deadline covers waiting for the lock too: the reader may be stuck writing a pong.
        with _send_deadline(seconds), self._lock:
            self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ClientStream:
    def __init__(self, ws: Any, hub: Hub, settings: Settings, params: StreamParams, app: Flask) -> None:
        self.ws = ws
        self.hub = hub
        self.settings = settings
        self.params = params
        self.app = app
        self.sock = LockedSocket(ws.sock)
        ws.sock = self.sock
        self.collapser = Collapser(settings.ws_collapse_interval_seconds) if params.collapse else None
        if self.collapser is not None and params.since is not None:
            self.collapser.tracking = True  # the gap fill may repeat what the live feed brings meanwhile
        self.subscriber = Subscriber(params.filter, ClientQueue(settings.ws_client_queue_size),
                                     collapser=self.collapser)
        self.gap_ids: set[str] = set()
        self.fills: GapFills = app.extensions["panopticon-ws-gap-fills"]
        self.ticket = 0

    def run(self) -> None:
        # Subscribe first, then read the gap: anything published meanwhile waits in the queue.
        self.hub.add(self.subscriber)
        self.ticket = self.fills.ticket()
        telemetry.WS_CLIENTS.inc()
        try:
            if self.params.since is not None:
                self._gap_fill()
            self._live()
        except SlowClient:
            log.warning("disconnected a client that accepted nothing for %ss", self.settings.ws_send_timeout_seconds)
            self._abort()
        except OSError as exc:
            log.debug("client went away: %s", exc)
            self._abort()
        finally:
            self.hub.remove(self.subscriber)
            telemetry.WS_CLIENTS.dec()

    # --- gap fill -----------------------------------------------------------------------------------
    def _gap_fill(self) -> None:
        since = self.params.since
        assert since is not None
        recent = self.hub.recent
        # A restarted process learns the publish order when it subscribes; wait for it (briefly) so the
        # cursors of clients that reconnect at once are placed exactly, not by their time.
        self.hub.placed.wait(PLACE_WAIT_S)
        position = recent.position(since.doc_id)
        # A placed cursor: look back for logs stored before it but published after it, and skip what was
        # published up to it. Otherwise start at the time itself (and skip the cursor's own log).
        start = since.ms - REORDER_MARGIN_MS if position is not None else since.ms
        oldest = int(time.time() * 1000) - self.settings.ws_gap_fill_max_age_seconds * 1000
        clamped = start < oldest
        start = max(start, oldest)
        limit = self.settings.ws_gap_fill_max
        try:
            with self.fills.read((start, self.params.filter, limit), lambda: stored_errors(
                    _store(self.app), self.settings, start, self.params.filter, limit),
                    self.ticket) as (messages, skipped):
                fresh = [m for m in messages if m.doc_id != since.doc_id
                         and not (position is not None and recent.published_by(m.doc_id, position))]
                if self.collapser is not None:
                    # The collapser saw what the live feed queued meanwhile: it counts every log once.
                    fresh = [m for m in fresh if self.collapser.admit(m)]
                    self.collapser.stop_tracking()
                else:
                    self.gap_ids = {m.doc_id for m in fresh}
                frames = [m.frame for m in fresh]
                frames.append(text_frame(notice("caught-up", count=len(fresh), skipped=skipped, clamped=clamped)))
                # One deadline for the whole gap: a client too slow to take it must not hold a slot for long.
                with _send_deadline(self.settings.ws_send_timeout_seconds):
                    self._write(frames)
        except StorageError as exc:
            log.warning("gap fill failed: %s", exc)
            if self.collapser is not None:
                self.collapser.stop_tracking()
            self._write([text_frame(notice("caught-up", count=0, skipped=0, clamped=clamped,
                                           error="logs-apm did not answer"))])

    # --- live ---------------------------------------------------------------------------------------
    def _live(self) -> None:
        wake, queue = self.subscriber.wake, self.subscriber.queue
        interval = self.settings.ws_ping_interval_seconds
        last_write = time.monotonic()
        while self.ws.connected:
            wake.wait(timeout=min(WAKE_S, interval))
            wake.clear()
            self._read_inbound()
            items, dropped = queue.take()
            frames = [text_frame(notice("dropped", count=dropped))] if dropped else []
            if dropped:
                telemetry.WS_DROPPED.inc(dropped)
            for message in items:
                if message.doc_id in self.gap_ids:  # already sent by the gap fill
                    self.gap_ids.discard(message.doc_id)
                    continue
                frames.append(message.frame)
            if self.collapser is not None:
                summaries = self.collapser.due()
                if summaries:
                    telemetry.WS_SUMMARIES.inc(len(summaries))
                    frames += summaries
            now = time.monotonic()
            if frames:
                self._write(frames)
                telemetry.WS_SENT.inc(len(frames))
                last_write = now
            elif now - last_write >= interval:
                self._ping()
                last_write = now

    def _ping(self) -> None:
        if not self.ws.pong_received:
            log.info("closing a client that did not answer the last ping")
            self.ws.close(reason=1011, message="ping timeout")
            return
        self.ws.pong_received = False
        self._write([PING_FRAME, text_frame(notice("ping"))])

    def _read_inbound(self) -> None:
        """Nothing is expected from clients: read and drop it, and stop a client that floods."""
        count = 0
        while self.ws.connected and self.ws.receive(timeout=0) is not None:
            count += 1
            if count > MAX_INBOUND_PER_WAKE:
                self.ws.close(reason=1008, message="too many messages")
                return

    def _write(self, frames: list[bytes]) -> None:
        chunk: list[bytes] = []
        size = 0
        for frame in frames:
            chunk.append(frame)
            size += len(frame)
            if size >= WRITE_CHUNK:
                self.sock.send_within(b"".join(chunk), self.settings.ws_send_timeout_seconds)
                chunk, size = [], 0
        if chunk:
            self.sock.send_within(b"".join(chunk), self.settings.ws_send_timeout_seconds)

    def _abort(self) -> None:
        """The stream may be cut mid-frame: no close frame, just drop the connection."""
        self.ws.connected = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
