"""The live error stream on the real stack: apm.logs -> bridge -> worker -> apm.logs.error -> relay -> Redis
pub/sub -> `ws` (gunicorn, gevent) -> real WebSocket clients.

Every process runs as the Procfile runs it. Waits are for conditions (a message arrived, a process is
subscribed), with generous limits that only turn a hang into a failure; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import websocket
from confluent_kafka import Producer
from websockets.asyncio.client import connect

from panopticon.errorstream.protocol import parse_since
from panopticon.kafka import ensure_topics, producer_config
from panopticon.model import LEVELS
from panopticon.model.times import iso_ms, iso_to_ms
from panopticon.processing.documents import log_document
from panopticon.settings import Settings
from panopticon.storage import LOGS, SearchStore
from tests.integration.processes import ProcessGroup, Running
from tests.integration.traffic import produce

WAIT_S = 120.0


# --- helpers ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_settings(namespace: Settings, **changes: Any) -> Settings:
    ns = namespace.index_prefix.rstrip("-")
    return namespace.replace(ws_port=free_port(), error_relay_group=f"{ns}-relay", bridge_metrics_port=0,
                             relay_metrics_port=0, **changes)


def ws_url(settings: Settings, query: str = "") -> str:
    return f"ws://127.0.0.1:{settings.ws_port}{settings.ws_path}" + (f"?{query}" if query else "")


def hub_stats(settings: Settings) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.ws_port}/readyz", timeout=5) as answer:
            return orjson.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S, running: Running | None = None
               ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, urllib.error.URLError, redis.RedisError):
            pass
        time.sleep(0.1)
    tail = f"\n{running.name}:\n{running.log_tail()}" if running else ""
    raise AssertionError(f"{what} did not happen in {timeout}s{tail}")


def start_stream(processes: ProcessGroup, settings: Settings) -> tuple[Running, Running]:
    """relay + ws, returned once the relay owns its partitions and the ws hub is subscribed."""
    ensure_topics(settings, [settings.kafka_apm_log_error_topic])
    relay = processes.start("relay", settings)
    ws = processes.start("ws", settings)
    processes.wait_for_log(relay, "relay assigned", timeout=WAIT_S)
    wait_until(lambda: hub_stats(settings)["subscribed"], "ws subscribed", running=ws)
    return relay, ws


def error_doc(event_id: str, service: str = "svc-a", level: str = "ERROR", environment: str = "prod",
              message: str = "boom") -> dict[str, Any]:
    now = int(time.time() * 1000)
    log = {"service_name": service, "environment": environment, "level": level, "message": message,
           "trace_id": None, "span_id": None, "attributes": {}, "event_id": event_id}
    return log_document(log, now, LEVELS[level], now, {"topic": "test", "partition": 0, "offset": 0})


def store_and_forward(settings: Settings, store: SearchStore | None, docs: list[dict[str, Any]],
                      rate: float = 0.0) -> None:
    """What the worker does with ERROR logs: store them in logs-apm, then copy them to the error topic
    (at `rate` per second when given)."""
    if store is not None:
        items = store.create_many(LOGS, [(d["event_id"], orjson.dumps(d)) for d in docs])
        assert all(item.stored for item in items), items[:3]
    producer = Producer(producer_config(settings))
    started = time.monotonic()
    for n, d in enumerate(docs, 1):
        while True:
            try:
                producer.produce(settings.kafka_apm_log_error_topic, orjson.dumps(d), key=d["event_id"].encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        ahead = n / rate - (time.monotonic() - started) if rate else 0
        if ahead > 0:  # computed once: two clock reads could make it negative between test and sleep
            time.sleep(ahead)
    assert producer.flush(60) == 0


class Client:
    """A real WebSocket client (websocket-client) reading on its own thread."""

    def __init__(self, url: str, **options: Any) -> None:
        self.ws = websocket.create_connection(url, timeout=WAIT_S, **options)
        self.events: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str] | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                    self.closed = (code, data[2:].decode(errors="replace"))
                    return
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self.events.append(orjson.loads(data))
        except (websocket.WebSocketException, OSError) as exc:
            self.closed = self.closed or (None, str(exc))

    def logs(self) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["event"] == "error-log"]

    def ids(self) -> list[str]:
        return [e["id"] for e in self.logs()]

    def wait_for_ids(self, wanted: set[str], running: Running | None = None) -> None:
        wait_until(lambda: wanted <= set(self.ids()), f"{len(wanted)} ids at the client", running=running)

    def close(self) -> None:
        self.ws.close()


def refused_status(url: str, **options: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=30, **options)
    return refused.value.status_code, orjson.loads(refused.value.resp_body or b"{}")


# --- end to end ------------------------------------------------------------------------------------
def test_error_log_goes_end_to_end_and_filters_hold(namespace: Settings, store: SearchStore, processes) -> None:
    settings = stream_settings(namespace)
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                             settings.kafka_apm_dlq_topic])
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    _relay, ws = start_stream(processes, settings)
    everything = Client(ws_url(settings))
    team_a = Client(ws_url(settings, "service=svc-a&environment=prod"))
    fatal = Client(ws_url(settings, "level=FATAL"))

    run = settings.index_prefix
    plan = [(f"{run}e{i}", ("svc-a", "svc-b")[i % 2], ("INFO", "ERROR", "WARN", "FATAL")[i % 4],
             "staging" if i % 5 == 0 else "prod") for i in range(80)]
    messages = [("log", orjson.dumps({"event_id": e, "timestamp": int(time.time() * 1000), "service_name": s,
                                      "environment": env, "level": lv, "message": f"m {e}"}))
                for e, s, lv, env in plan]
    produce(settings, messages)
    errors = {e for e, _s, lv, _env in plan if lv in ("ERROR", "FATAL")}
    everything.wait_for_ids(errors, running=bridge)

    # A marker sent after everything else was delivered: a client that has it has seen all before it.
    marker = f"{run}marker"
    produce(settings, [("log", orjson.dumps({"event_id": marker, "timestamp": int(time.time() * 1000),
                                              "service_name": "svc-a", "environment": "prod", "level": "FATAL",
                                              "message": "marker"}))])
    for client in (everything, team_a, fatal):
        client.wait_for_ids({marker}, running=ws)

    assert sorted(everything.ids()) == sorted(errors | {marker}), "every error once, no INFO/WARN"
    assert sorted(team_a.ids()) == sorted({e for e, s, lv, env in plan if lv in ("ERROR", "FATAL")
                                           and s == "svc-a" and env == "prod"} | {marker})
    assert sorted(fatal.ids()) == sorted({e for e, _s, lv, _env in plan if lv == "FATAL"} | {marker})
    sample = everything.logs()[0]
    assert set(sample) == {"event", "cursor", "id", "log"}
    assert sample["log"]["level"] in ("ERROR", "FATAL") and sample["log"]["event_id"] == sample["id"]
    since = parse_since(sample["cursor"])
    assert since.doc_id == sample["id"] and since.ms == iso_to_ms(sample["log"]["ingested_at"])


# --- many clients, one slow ---------------------------------------------------------------------------
async def _read_burst(url: str, count: int) -> list[str]:
    ids: list[str] = []
    async with connect(url, max_size=None, open_timeout=60, ping_interval=None) as conn:
        while len(ids) < count:
            event = orjson.loads(await conn.recv())
            if event["event"] == "error-log":
                ids.append(event["id"])
            elif event["event"] == "dropped":
                raise AssertionError(f"a fast client was told {event['count']} messages were dropped")
    return ids


def test_200_clients_get_the_same_burst_in_order_while_one_client_reads_nothing(
        namespace: Settings, processes) -> None:
    # One partition: the burst has one order, which every client must see.
    # No ping in this test: the client that reads nothing would (rightly) be closed for not answering.
    settings = stream_settings(namespace, kafka_topic_partitions=1, ws_send_timeout_seconds=300,
                               ws_ping_interval_seconds=600)
    _relay, ws = start_stream(processes, settings)
    slow = websocket.create_connection(ws_url(settings), timeout=WAIT_S,
                                       sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    burst = [error_doc(f"{settings.index_prefix}b{i:04d}", message="x" * 200) for i in range(1000)]

    async def run() -> list[list[str]]:
        readers = [asyncio.create_task(_read_burst(ws_url(settings), len(burst))) for _ in range(200)]
        await asyncio.to_thread(wait_until, lambda: hub_stats(settings)["clients"] >= 201, "201 clients")
        await asyncio.to_thread(store_and_forward, settings, None, burst)
        return await asyncio.wait_for(asyncio.gather(*readers), WAIT_S * 2)

    results = asyncio.run(run())
    expected = [d["event_id"] for d in burst]
    assert len(results) == 200
    assert all(ids == expected for ids in results), "every client: all 1,000, in the order produced"

    # Only now does the slow client read: whatever it got is in order, and the rest was announced.
    slow.settimeout(30)
    got, dropped = [], 0
    while len(got) + dropped < len(burst):
        event = orjson.loads(slow.recv())
        if event["event"] == "error-log":
            got.append(event["id"])
        elif event["event"] == "dropped":
            dropped += event["count"]
    assert got == [i for i in expected if i in set(got)], "in order, with gaps only where announced"
    assert len(got) + dropped == len(burst)
    slow.close()
    assert ws.alive()


def test_one_ws_process_holds_2000_sockets(namespace: Settings, processes) -> None:
    settings = stream_settings(namespace, ws_ping_interval_seconds=600)
    _relay, ws = start_stream(processes, settings)
    baseline = sum(p.memory_info().rss for p in processes.children(ws))
    count = settings.ws_max_clients

    async def run() -> tuple[int, list[str]]:
        sockets = []
        for _ in range(0, count, 100):
            sockets += await asyncio.gather(*(connect(ws_url(settings), compression=None, ping_interval=None,
                                                      open_timeout=60) for _ in range(100)))
        await asyncio.to_thread(wait_until, lambda: hub_stats(settings)["clients"] >= count, f"{count} clients")
        held = sum(p.memory_info().rss for p in processes.children(ws))
        doc = error_doc(f"{settings.index_prefix}all")
        await asyncio.to_thread(store_and_forward, settings, None, [doc])

        async def first_log(conn: Any) -> str:
            while True:
                event = orjson.loads(await conn.recv())
                if event["event"] == "error-log":
                    return event["id"]

        ids = await asyncio.wait_for(asyncio.gather(*(first_log(c) for c in sockets)), WAIT_S)
        # One more than the limit is refused before the upgrade, and the process stays up.
        status, _body = await asyncio.to_thread(refused_status, ws_url(settings))
        assert status == 503
        await asyncio.gather(*(c.close() for c in sockets))
        return held, ids

    held, ids = asyncio.run(run())
    assert ids == [f"{settings.index_prefix}all"] * count
    print(f"\n{count} sockets held by one ws worker: RSS {baseline / 2**20:.0f} -> {held / 2**20:.0f} MiB "
          f"({(held - baseline) / count / 1024:.0f} KiB per socket)")
    assert ws.alive()


def test_a_slow_client_is_told_what_it_missed_and_memory_stays_bounded(namespace: Settings, processes) -> None:
    settings = stream_settings(namespace, kafka_topic_partitions=1, ws_client_queue_size=500,
                               ws_send_timeout_seconds=300, ws_ping_interval_seconds=600)
    _relay, ws = start_stream(processes, settings)
    slow = websocket.create_connection(ws_url(settings), timeout=WAIT_S,
                                       sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    fast = Client(ws_url(settings))
    wait_until(lambda: hub_stats(settings)["clients"] >= 2, "2 clients")
    # 12 MB: more than the kernel buffers (about 4 MB on Linux) and the queue hold for a socket that is
    # not read, sent at 2 MB/s, which a client that reads keeps up with.
    burst = [error_doc(f"{settings.index_prefix}s{i:04d}", message="y" * 4000) for i in range(3000)]
    store_and_forward(settings, None, burst, rate=500)
    wait_until(lambda: len(fast.events) >= len(burst) or any(e["event"] == "dropped" for e in fast.events),
               "the fast client read the burst", running=ws)
    assert not [e for e in fast.events if e["event"] == "dropped"], "the fast client lost nothing"
    assert hub_stats(settings)["queued"] <= settings.ws_client_queue_size, "a client's queue is bounded"

    slow.settimeout(30)
    got, notices = [], []
    while len(got) + sum(notices) < len(burst):
        event = orjson.loads(slow.recv())
        if event["event"] == "error-log":
            got.append(event["id"])
        elif event["event"] == "dropped":
            notices.append(event["count"])
    expected = [d["event_id"] for d in burst]
    assert notices, "the slow client overflowed and was told so"
    assert got == [i for i in expected if i in set(got)]
    assert len(got) + sum(notices) == len(burst)
    assert fast.ids() == expected, "the fast client lost nothing"
    slow.close()


def test_a_client_that_accepts_nothing_is_disconnected_and_the_others_carry_on(namespace: Settings,
                                                                              processes) -> None:
    settings = stream_settings(namespace, kafka_topic_partitions=1, ws_client_queue_size=2000,
                               ws_send_timeout_seconds=3, ws_ping_interval_seconds=600)
    _relay, ws = start_stream(processes, settings)
    stuck = websocket.create_connection(ws_url(settings), timeout=WAIT_S,
                                        sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    fast = Client(ws_url(settings))
    wait_until(lambda: hub_stats(settings)["clients"] >= 2, "2 clients")
    burst = [error_doc(f"{settings.index_prefix}d{i:04d}", message="z" * 4000) for i in range(2000)]
    store_and_forward(settings, None, burst)
    fast.wait_for_ids({d["event_id"] for d in burst}, running=ws)
    wait_until(lambda: hub_stats(settings)["clients"] == 1, "the stuck client was disconnected", running=ws)
    processes.wait_for_log(ws, "disconnected a client that accepted nothing", timeout=WAIT_S)
    assert fast.ids() == [d["event_id"] for d in burst] and fast.closed is None
    stuck.close()


# --- security -----------------------------------------------------------------------------------------
def test_handshakes_without_token_or_from_a_foreign_origin_are_refused(namespace: Settings, processes) -> None:
    settings = stream_settings(namespace, api_auth_tokens=("s3cret", "other"),
                               ws_allowed_origins=("https://ops.example.com",), ws_max_inbound_bytes=1024,
                               ws_ping_interval_seconds=1)
    _relay, _ws = start_stream(processes, settings)
    url = ws_url(settings)

    status, body = refused_status(url, suppress_origin=True)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    metrics = f"http://127.0.0.1:{settings.ws_port}/metrics"
    with pytest.raises(urllib.error.HTTPError) as no_token:
        urllib.request.urlopen(metrics, timeout=10)
    assert no_token.value.code == 401, "ws /metrics is behind the same tokens as web's"
    with urllib.request.urlopen(urllib.request.Request(metrics, headers={"Authorization": "Bearer other"}),
                                timeout=10) as answer:
        assert b"panopticon_ws_clients" in answer.read()
    assert refused_status(url, header=["Authorization: Bearer wrong"], origin="https://ops.example.com")[0] == 401
    assert refused_status(ws_url(settings, "token=wrong"), suppress_origin=True)[0] == 401
    status, body = refused_status(url, header=["Authorization: Bearer s3cret"], origin="https://evil.example.com")
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"
    status, body = refused_status(ws_url(settings, "token=s3cret&level=INFO&colour=red"), suppress_origin=True)
    assert status == 400 and body["error"]["parameter"] == "colour" and "level: must be one of" in \
        body["error"]["message"]

    by_header = Client(url, header=["Authorization: Bearer other"], origin="https://ops.example.com")
    # No Origin header: not a browser, so nothing cross-site to refuse.
    by_query = Client(ws_url(settings, "token=s3cret"), suppress_origin=True)
    doc = error_doc(f"{settings.index_prefix}sec")
    store_and_forward(settings, None, [doc])
    by_header.wait_for_ids({doc["event_id"]})
    by_query.wait_for_ids({doc["event_id"]})

    by_query.ws.send("x" * 2048)  # over WS_MAX_INBOUND_BYTES
    wait_until(lambda: by_query.closed is not None, "oversized message closes the socket")
    assert by_query.closed[0] == 1009
    by_header.ws.send('{"hello": 1}')  # small inbound messages are ignored
    doc2 = error_doc(f"{settings.index_prefix}sec2")
    store_and_forward(settings, None, [doc2])
    by_header.wait_for_ids({doc2["event_id"]})
    wait_until(lambda: any(e["event"] == "ping" for e in by_header.events), "a keep-alive ping when idle")
    assert by_header.closed is None, "a client that answers pings stays connected"
    by_header.close()


BROWSER = ["User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0",
           "Accept-Language: en-GB,en;q=0.9", "Cache-Control: no-cache", "Pragma: no-cache",
           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits", "Sec-Fetch-Dest: websocket",
           "Sec-Fetch-Mode: websocket"]


def test_a_browser_on_another_site_is_refused_by_default_and_our_own_pages_are_accepted(
        namespace: Settings, processes) -> None:
    """No WS_ALLOWED_ORIGINS, no tokens (the defaults): the handshake a browser sends from a foreign page
    (cross-site WebSocket hijacking) is refused before the upgrade; the same origin, our dashboard's
    origin on API_PORT and loopback pages are accepted; a client without Origin is not a browser."""
    settings = stream_settings(namespace)
    assert settings.ws_allowed_origins == () and settings.api_auth_tokens == ()
    _relay, ws = start_stream(processes, settings)
    url, port = ws_url(settings), settings.ws_port
    # The page's host name as the browser sends it in Host: not loopback, so only the Origin rule decides.
    host = f"apm.example:{port}"

    def refused(origin: str, site: str = "cross-site") -> tuple[int, dict[str, Any]]:
        return refused_status(url, host=host, origin=origin, header=[*BROWSER, f"Sec-Fetch-Site: {site}"])

    for origin in ("https://evil.example", f"http://evil.example:{port}", "http://apm.example:8080",
                   f"http://apm.example.evil.example:{port}", "null"):
        status, body = refused(origin)
        assert status == 403 and body["error"]["code"] == "origin_not_allowed", origin

    def browser(origin: str, site: str) -> Client:
        return Client(url, host=host, origin=origin, header=[*BROWSER, f"Sec-Fetch-Site: {site}"])

    accepted = [browser(f"http://apm.example:{port}", "same-origin"),
                browser(f"http://apm.example:{settings.api_port}", "same-site"),  # our dashboard
                browser("http://localhost:5173", "cross-site"),
                Client(url, suppress_origin=True)]
    doc = error_doc(f"{settings.index_prefix}origin")
    store_and_forward(settings, None, [doc])
    for client in accepted:
        client.wait_for_ids({doc["event_id"]}, running=ws)
        assert client.closed is None
    processes.wait_for_log(ws, "refused a websocket from origin 'https://evil.example'")


# --- gap fill -------------------------------------------------------------------------------------------
def test_reconnect_with_since_gets_what_it_missed_then_live_without_duplicates(
        namespace: Settings, store: SearchStore, processes) -> None:
    settings = stream_settings(namespace)
    _relay, ws = start_stream(processes, settings)
    run = settings.index_prefix
    first = Client(ws_url(settings))
    before = [error_doc(f"{run}a{i}", service=("svc-a", "svc-b")[i % 2]) for i in range(10)]
    store_and_forward(settings, store, before)
    first.wait_for_ids({d["event_id"] for d in before}, running=ws)
    cursor = first.logs()[-1]["cursor"]
    first.close()

    missed = [error_doc(f"{run}m{i}", service=("svc-a", "svc-b")[i % 2]) for i in range(12)]
    store_and_forward(settings, store, missed)
    wait_until(lambda: hub_stats(settings)["delivered"] >= len(before) + len(missed), "hub saw the missed logs")
    store.refresh(store.name(LOGS))

    again = Client(ws_url(settings, f"since={cursor}"))
    team_a = Client(ws_url(settings, f"since={cursor}&service=svc-a"))
    for client in (again, team_a):
        wait_until(lambda c=client: any(e["event"] == "caught-up" for e in c.events), "caught-up")
    live = [error_doc(f"{run}l{i}", service=("svc-a", "svc-b")[i % 2]) for i in range(6)]
    store_and_forward(settings, store, live)
    again.wait_for_ids({d["event_id"] for d in live}, running=ws)
    team_a.wait_for_ids({d["event_id"] for d in live if d["service_name"] == "svc-a"}, running=ws)

    missed_ids = {d["event_id"] for d in missed}
    live_ids = {d["event_id"] for d in live}
    for client, wanted in ((again, None), (team_a, "svc-a")):
        events = [e["event"] for e in client.events if e["event"] != "ping"]
        seam = events.index("caught-up")
        gap = [e["id"] for e in client.events[:seam] if e["event"] == "error-log"]
        ids = client.ids()
        assert len(ids) == len(set(ids)), "no duplicates across the seam"
        assert set(gap) == {d["event_id"] for d in missed if wanted in (None, d["service_name"])}
        assert set(ids) == (missed_ids | live_ids) & {d["event_id"] for d in missed + live
                                                      if wanted in (None, d["service_name"])}

    # A time works too: everything stored since then, in storing order.
    store.refresh(store.name(LOGS))
    since_time = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 600)) + "Z"
    by_time = Client(ws_url(settings, f"since={since_time}"))
    wait_until(lambda: any(e["event"] == "caught-up" for e in by_time.events), "caught-up")
    assert set(by_time.ids()) == {d["event_id"] for d in before + missed + live}
    times = [parse_since(e["cursor"]).ms for e in by_time.logs()]
    assert times == sorted(times)


# --- redis outage ---------------------------------------------------------------------------------------
@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen]]:
    """A throwaway redis-server this test may kill; the shared one is never touched."""
    port = free_port()
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        started.append(server)
        wait_until(lambda: redis.Redis(port=port, socket_timeout=1).ping(), "redis-server up", timeout=30)
        return server

    start.port = port  # type: ignore[attr-defined]
    yield start
    for server in started:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_killing_redis_and_restarting_it_resumes_the_feed(namespace: Settings, store: SearchStore, processes,
                                                         own_redis) -> None:
    server = own_redis()
    settings = stream_settings(namespace, redis_host="127.0.0.1", redis_port=own_redis.port)
    relay, ws = start_stream(processes, settings)
    client = Client(ws_url(settings))
    run = settings.index_prefix

    batches = {name: [error_doc(f"{run}{name}{i}") for i in range(20)] for name in ("before", "during", "after")}
    store_and_forward(settings, store, batches["before"])
    client.wait_for_ids({d["event_id"] for d in batches["before"]}, running=ws)

    server.kill()
    server.wait(10)
    wait_until(lambda: not hub_stats(settings)["subscribed"], "ws noticed redis is gone", running=ws)
    store_and_forward(settings, store, batches["during"])
    processes.wait_for_log(relay, "redis publish failed", timeout=WAIT_S)
    store.refresh(store.name(LOGS))

    own_redis()
    wait_until(lambda: hub_stats(settings)["subscribed"], "ws resubscribed", running=ws)
    store_and_forward(settings, store, batches["after"])
    everything = {d["event_id"] for batch in batches.values() for d in batch}
    client.wait_for_ids(everything, running=ws)
    ids = client.ids()
    assert len(ids) == len(set(ids)) == len(everything), "each error once, none lost"
    assert client.closed is None, "the socket stayed open through the outage"
    assert relay.alive() and ws.alive()


# --- latency (reported, not asserted) ---------------------------------------------------------------------
def _measure_latency(settings: Settings, client: TimedClient, count: int, rate: float,
                     prefix: str = "lat") -> tuple[list[float], list[float]]:
    """Produce ERROR logs to apm.logs one by one; per log, produce -> received and stored -> received (ms)."""
    producer = Producer(producer_config(settings))
    sent: dict[str, float] = {}
    for i in range(count):
        event = f"{settings.index_prefix}{prefix}{i}"
        sent[event] = time.time()
        producer.produce(settings.kafka_apm_log_topic, orjson.dumps(
            {"event_id": event, "timestamp": int(sent[event] * 1000), "service_name": "latency",
             "environment": "bench", "level": "ERROR", "message": "latency probe"}))
        producer.flush(10)
        time.sleep(1 / rate)
    client.wait_for_ids(set(sent))
    stored = {e["id"]: iso_to_ms(e["log"]["ingested_at"]) / 1000 for e in client.logs()}
    return ([(client.received_at[e] - sent[e]) * 1000 for e in sent],
            [(client.received_at[e] - stored[e]) * 1000 for e in sent])


class TimedClient(Client):
    def __init__(self, url: str) -> None:
        self.received_at: dict[str, float] = {}
        super().__init__(url)

    def _read(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data()
                if opcode != websocket.ABNF.OPCODE_TEXT:
                    return
                event = orjson.loads(data)
                if event["event"] == "error-log":
                    self.received_at[event["id"]] = time.time()
                self.events.append(event)
        except (websocket.WebSocketException, OSError):
            return


def _background(settings: Settings, rate: int, stop: threading.Event) -> None:
    """INFO logs at `rate` per second (other traffic the pipeline must carry)."""
    producer = Producer(producer_config(settings))
    started, n = time.monotonic(), 0
    while not stop.is_set():
        body = orjson.dumps({"timestamp": int(time.time() * 1000), "service_name": "noise", "environment": "bench",
                             "level": "INFO", "message": "background"})
        for _ in range(rate // 20):
            try:
                producer.produce(settings.kafka_apm_log_topic, body)
            except BufferError:
                producer.poll(0.01)
            n += 1
        producer.poll(0)
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
    producer.flush(30)


@pytest.mark.parametrize("background_rate", [0, 5000], ids=["idle", "5000-logs-per-s"])
def test_produce_to_receive_latency_report(namespace: Settings, store: SearchStore, processes,
                                           background_rate: int) -> None:
    settings = stream_settings(namespace)
    ensure_topics(settings, [settings.kafka_apm_log_topic, settings.kafka_apm_span_topic,
                             settings.kafka_apm_dlq_topic])
    processes.start("worker", settings)
    bridge = processes.start("bridge", settings)
    start_stream(processes, settings)
    processes.wait_for_log(bridge, "assigned", timeout=WAIT_S)
    client = TimedClient(ws_url(settings, "service=latency"))
    stop = threading.Event()
    noise = threading.Thread(target=_background, args=(settings, background_rate, stop), daemon=True)
    if background_rate:
        noise.start()
        time.sleep(5)  # let the pipeline reach a steady state under the load
    try:
        _measure_latency(settings, client, 5, rate=5, prefix="warm")  # first task opens its connections
        end_to_end, from_store = _measure_latency(settings, client, 150, rate=10)
    finally:
        stop.set()
        if background_rate:
            noise.join(60)
    print(f"\nlatency with {background_rate} logs/s of other traffic (n={len(end_to_end)}, "
          f"BULK_FLUSH_INTERVAL_MS={settings.bulk_flush_interval_ms}): produce->received {_quantiles(end_to_end)}; "
          f"stored->received {_quantiles(from_store)}")
    assert len(end_to_end) == 150


def _quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):.0f} ms, p99 {p99:.0f} ms, max {ordered[-1]:.0f} ms"


# --- a ws restart: everyone reconnects at once with since= -----------------------------------------------
def _ws_rss(processes: ProcessGroup, ws: Running) -> int:
    """RSS of the ws process: the gunicorn master and its worker (the worker holds the sockets)."""
    import psutil

    master = psutil.Process(ws.process.pid)
    return master.memory_info().rss + sum(p.memory_info().rss for p in processes.children(ws))


def _sample_peak(measure: Callable[[], int], stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a process that just ended: sample again
            peak[0] = max(peak[0], measure())
        time.sleep(0.05)


def _order_ids(settings: Settings) -> list[str]:
    """The ids in the relay's publish order list (Redis), oldest first."""
    from panopticon.errorstream.protocol import order_key

    client = redis.Redis.from_url(settings.redis_url(), socket_timeout=5)
    return [parse_since(e.decode()).doc_id for e in client.lrange(order_key(settings.error_channel), 0, -1)]


WS_RSS_BOUND_MIB = 400  # stated in OPERATIONS.md ("Live error stream: memory")


def test_2000_clients_reconnecting_at_once_after_a_ws_restart_get_their_gap_exactly_once(
        namespace: Settings, store: SearchStore, processes) -> None:
    """A ws process is killed with 2,000 clients on it. While it is down errors go on being stored and
    published, one of them from a batch that completed out of order (stored before the last log the
    clients saw). The new process starts; all 2,000 reconnect at once with the cursor of the last log
    they saw. Each gets exactly what it missed (with its filter), once, then the live feed, once; the
    process's RSS is sampled throughout and must stay under the bound OPERATIONS.md states."""
    settings = stream_settings(namespace, ws_ping_interval_seconds=600)
    relay, ws = start_stream(processes, settings)
    count, run = settings.ws_max_clients, settings.index_prefix
    filters = ["", "service=svc-a"]  # half the clients want everything, half one service
    before = [error_doc(f"{run}b{i}", service=("svc-a", "svc-b")[i % 2]) for i in range(6)]

    async def connect_all(query: Callable[[int], str]) -> list[Any]:
        sockets: list[Any] = []
        for start in range(0, count, 200):
            sockets += await asyncio.gather(*(connect(ws_url(settings, query(n)), compression=None, max_size=None,
                                                      ping_interval=None, open_timeout=120)
                                              for n in range(start, min(count, start + 200))))
        return sockets

    async def read_until(conn: Any, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while not done(events):
            events.append(orjson.loads(await conn.recv()))
        return events

    async def first_session() -> list[str]:
        sockets = await connect_all(lambda n: filters[n % 2])
        await asyncio.to_thread(wait_until, lambda: hub_stats(settings)["clients"] >= count, f"{count} clients")
        await asyncio.to_thread(store_and_forward, settings, store, before)
        wanted = [len(before), sum(d["service_name"] == "svc-a" for d in before)]
        seen = await asyncio.wait_for(asyncio.gather(*(
            read_until(c, lambda ev, n=n: len(ev) >= wanted[n % 2]) for n, c in enumerate(sockets))), WAIT_S)
        cursors = [events[-1]["cursor"] for events in seen]
        await asyncio.gather(*(c.close() for c in sockets))
        return cursors

    cursors = asyncio.run(first_session())
    last_seen = max(parse_since(c).ms for c in cursors)

    os.killpg(ws.process.pid, signal.SIGKILL)
    ws.process.wait(30)
    # Stored and published while no ws process runs: one batch completed out of order (stored 20 s before
    # the last log the clients saw, published after it), then 200 more.
    late = error_doc(f"{run}late", service="svc-a")
    late["ingested_at"] = iso_ms(last_seen - 20_000)
    missed = [late] + [error_doc(f"{run}m{i:03d}", service=("svc-a", "svc-b")[i % 2], message="m" * 400)
                       for i in range(200)]
    store_and_forward(settings, store, missed)
    wait_until(lambda: {d["event_id"] for d in missed} <= set(_order_ids(settings)), "the relay published them",
               running=relay)
    store.refresh(store.name(LOGS))

    ws = processes.start("ws", settings)
    wait_until(lambda: hub_stats(settings)["feed"] == "up", "the new ws subscribed", running=ws)
    baseline = _ws_rss(processes, ws)
    stop, peak = threading.Event(), [baseline]
    sampler = threading.Thread(target=_sample_peak, args=(lambda: _ws_rss(processes, ws), stop, peak), daemon=True)
    sampler.start()
    after = [error_doc(f"{run}a{i}", service=("svc-a", "svc-b")[i % 2]) for i in range(6)]

    async def reconnect() -> list[list[dict[str, Any]]]:
        sockets = await asyncio.gather(*(
            connect(ws_url(settings, "&".join(q for q in (filters[n % 2], f"since={cursors[n]}") if q)),
                    compression=None, max_size=None, ping_interval=None, open_timeout=300)
            for n in range(count)))
        gaps = await asyncio.wait_for(asyncio.gather(*(
            read_until(c, lambda ev: bool(ev) and ev[-1]["event"] == "caught-up") for c in sockets)), WAIT_S * 2)
        await asyncio.to_thread(store_and_forward, settings, store, after)
        wanted = [len(after), sum(d["service_name"] == "svc-a" for d in after)]
        lives = await asyncio.wait_for(asyncio.gather(*(
            read_until(c, lambda ev, n=n: len([e for e in ev if e["event"] == "error-log"]) >= wanted[n % 2])
            for n, c in enumerate(sockets))), WAIT_S)
        await asyncio.sleep(2)  # a repeat, if one could come, arrives in this time
        tails = await asyncio.gather(*(_drain(c) for c in sockets))
        await asyncio.gather(*(c.close() for c in sockets))
        return [g + lv + t for g, lv, t in zip(gaps, lives, tails, strict=True)]

    try:
        sessions = asyncio.run(reconnect())
    finally:
        stop.set()
        sampler.join(5)
    fills = urllib.request.urlopen(f"http://127.0.0.1:{settings.ws_port}/metrics", timeout=10).read().decode()

    for n, events in enumerate(sessions):
        want = (lambda d: True) if n % 2 == 0 else (lambda d: d["service_name"] == "svc-a")
        seam = [e["event"] for e in events].index("caught-up")
        gap = [e["id"] for e in events[:seam] if e["event"] == "error-log"]
        live = [e["id"] for e in events[seam:] if e["event"] == "error-log"]
        # Three partitions: the live order is the relay's, not the producer's, so compare as sorted lists.
        assert sorted(gap) == sorted(d["event_id"] for d in missed if want(d)), f"client {n}: its gap, once"
        assert sorted(live) == sorted(d["event_id"] for d in after if want(d)), f"client {n}: the live feed, once"
        assert not [e for e in events if e["event"] == "dropped"]
    reads = sum(float(v) for k, v in re.findall(r'panopticon_ws_gap_fills_total\{outcome="(\w+)"\} (\S+)', fills)
                if k == "read")
    print(f"\n{count} clients reconnected at once with since= after a ws restart: ws RSS {baseline / 2**20:.0f} "
          f"MiB idle -> peak {peak[0] / 2**20:.0f} MiB; {reads:.0f} reads of logs-apm for {count} gap fills")
    assert peak[0] < WS_RSS_BOUND_MIB * 2**20, f"ws RSS peaked at {peak[0] / 2**20:.0f} MiB"
    assert ws.alive()


async def _drain(conn: Any) -> list[dict[str, Any]]:
    """Whatever is already waiting on the socket (nothing, when nothing is repeated)."""
    events = []
    while True:
        try:
            events.append(orjson.loads(await asyncio.wait_for(conn.recv(), 0.05)))
        except TimeoutError:
            return [e for e in events if e["event"] != "ping"]
