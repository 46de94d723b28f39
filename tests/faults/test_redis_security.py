"""Redis over TLS with a password (tests/faults/secure_redis.py: a redis-server that speaks TLS only, with its
own CA, and requires AUTH), for every Redis client at once: the Celery broker and result backend (the
real bridge and worker moving batches), the query cache (the API's X-Cache) and pub/sub (relay -> ws).
A wrong password, a missing CA and a host the certificate does not name are refused; no password is
logged by any process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from panopticon.api import create_app
from panopticon.settings import Settings
from panopticon.storage import SearchStore
from tests.faults.harness import ensure_pipeline_topics
from tests.faults.secure_redis import PASSWORD, SecureRedis
from tests.integration.processes import ProcessGroup
from tests.integration.test_error_stream import (
    Client,
    error_doc,
    start_stream,
    store_and_forward,
    stream_settings,
    ws_url,
)
from tests.integration.traffic import check_exact, make_messages, produce, wait_for_count


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    server = SecureRedis(tmp_path_factory.mktemp("secure-redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _over_tls(server: SecureRedis, base: Settings, **changes) -> Settings:
    values = {"redis_host": "localhost", "redis_port": server.port, "redis_tls": True, "redis_ca_file": server.ca_file,
              "redis_password": PASSWORD, "celery_broker_url": "", "celery_result_backend": "", **changes}
    return base.replace(**values)


def test_broker_cache_and_pubsub_all_speak_tls_with_the_password(
        secure_redis: SecureRedis, namespace: Settings, store: SearchStore, processes: ProcessGroup) -> None:
    settings = _over_tls(secure_redis, stream_settings(namespace))
    assert settings.broker_url.startswith("rediss://") and settings.result_backend.startswith("rediss://")

    # Broker and result backend: the bridge hands batches to the worker through the TLS Redis.
    ensure_pipeline_topics(settings)
    messages, produced = make_messages(settings.index_prefix, 600, bad_ratio=0.0)
    processes.start("worker", settings)
    processes.start("bridge", settings)
    produce(settings, messages)
    assert wait_for_count(store, produced.valid, timeout=180) == produced.valid
    result = check_exact(store, produced)
    assert (result["lost"], result["duplicated"], result["unexpected"]) == (0, 0, 0), result
    queued = redis.Redis.from_url(settings.broker_url, socket_timeout=5)
    assert queued.ping() and queued.dbsize() > 0, "the broker's keys are on the TLS server"

    # Pub/sub: relay -> TLS Redis -> ws hub -> a client.
    _relay, ws = start_stream(processes, settings)
    client = Client(ws_url(settings))
    doc = error_doc(f"{settings.index_prefix}tls")
    store_and_forward(settings, store, [doc])
    client.wait_for_ids({doc["event_id"]}, running=ws)

    # The query cache: a second identical metrics question is answered from the TLS Redis.
    api = create_app(settings).test_client()
    first = api.get("/query/services/checkout/metrics?start=1h")
    second = api.get("/query/services/checkout/metrics?start=1h")
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert api.get("/readyz").json["checks"]["redis"] is True

    for running in processes.running:
        text = running.log_path.read_text(errors="replace")
        assert PASSWORD not in text, f"the Redis password is in the {running.name} log"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        pytest.param({"redis_password": "wrong-pw"}, redis.AuthenticationError, id="wrong-password"),
        pytest.param({"redis_password": None}, redis.AuthenticationError, id="no-password"),
        pytest.param({"redis_ca_file": None}, redis.ConnectionError, id="untrusted-certificate"),
        pytest.param({"redis_host": "127.0.0.1"}, redis.ConnectionError, id="host-not-in-certificate"),
        pytest.param({"redis_tls": False}, redis.ConnectionError, id="plaintext-to-a-tls-port"),
    ],
)
def test_what_the_server_does_not_accept_is_refused(secure_redis: SecureRedis, namespace: Settings,
                                                    changes: dict, error: type[Exception]) -> None:
    settings = _over_tls(secure_redis, namespace, **changes)
    with pytest.raises(error) as caught:
        redis.Redis.from_url(settings.redis_url(), socket_timeout=5, socket_connect_timeout=5).ping()
    assert PASSWORD not in str(caught.value)
