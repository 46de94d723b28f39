"""Engine auth and TLS against a server that demands both (tests/faults/secure_engine.py: nginx with its own
CA and basic auth in front of the local OpenSearch): good credentials work, through the store and the
real worker; a wrong password and an untrusted certificate fail with a message naming the variable to
fix and never the secret; OPENSEARCH_REJECT_UNAUTHORIZED=false is the only way past a bad certificate."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from panopticon.api import create_app
from panopticon.exceptions import EngineMisconfigured
from panopticon.settings import Settings
from panopticon.storage import LOGS, open_store
from tests.faults.harness import ensure_pipeline_topics
from tests.faults.secure_engine import PASSWORD, USER, SecureEngine
from tests.integration.processes import ProcessGroup
from tests.integration.traffic import check_exact, make_messages, produce, wait_for_count


@pytest.fixture(scope="module")
def secure_engine(tmp_path_factory: pytest.TempPathFactory, stack: Settings) -> Iterator[SecureEngine]:
    proxy = SecureEngine(tmp_path_factory.mktemp("secure-engine"), stack.elasticsearch_node)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()


def _through(proxy: SecureEngine, namespace: Settings, **changes) -> Settings:
    values = {"elasticsearch_node": proxy.url, "search_engine": "auto", "opensearch_username": USER,
              "opensearch_password": PASSWORD, "search_ca_file": proxy.ca_file, **changes}
    return namespace.replace(**values)


def _refused(settings: Settings) -> str:
    with pytest.raises(EngineMisconfigured) as caught:
        store = open_store(settings)
        try:
            store.count(store.name(LOGS))
        finally:
            store.close()
    text = str(caught.value)
    assert PASSWORD not in text and "wrong-pw" not in text, "the message never carries a password"
    return text


def test_good_credentials_and_our_ca_work_through_the_store_the_api_and_the_worker(
        secure_engine: SecureEngine, namespace: Settings, processes: ProcessGroup) -> None:
    settings = _through(secure_engine, namespace)
    store = open_store(settings, setup=True)
    assert store.engine.name == "opensearch", "engine detection goes through the proxy too"
    assert all(item.stored for item in store.create_many(LOGS, [("tls-1", orjson.dumps(
        {"@timestamp": "2024-05-01T12:00:00.000Z", "message": "over tls"}))]))
    store.refresh(store.name(LOGS))
    assert store.count(store.name(LOGS)) == 1
    assert create_app(settings).test_client().get("/readyz").json["checks"]["search"] is True

    # The real worker stores a batch the real bridge hands it, through the proxy.
    ensure_pipeline_topics(settings)
    messages, produced = make_messages(settings.index_prefix, 400, bad_ratio=0.0)
    produce(settings, messages)
    processes.start("worker", settings)
    processes.start("bridge", settings)
    assert wait_for_count(store, produced.valid + 1, timeout=180) == produced.valid + 1
    result = check_exact(store, produced)
    assert (result["lost"], result["duplicated"]) == (0, 0), result
    store.close()
    for running in processes.running:
        assert PASSWORD not in running.log_path.read_text(errors="replace"), f"password in the {running.name} log"


def test_a_wrong_password_names_the_variables(secure_engine: SecureEngine, namespace: Settings) -> None:
    text = _refused(_through(secure_engine, namespace, opensearch_password="wrong-pw"))
    assert "refused the credentials (401" in text and "OPENSEARCH_PASSWORD" in text
    text = _refused(_through(secure_engine, namespace, opensearch_username=None, opensearch_password=None))
    assert "OPENSEARCH_USERNAME is empty" in text


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        pytest.param({"search_ca_file": None}, "not signed by a CA we trust", id="no-ca-file"),
        pytest.param({"search_ca_file": "other"}, "not signed by a CA we trust", id="another-ca"),
        pytest.param({"elasticsearch_node": "ip"}, "does not name this host", id="host-not-in-certificate"),
    ],
)
def test_an_untrusted_certificate_names_search_ca_file(secure_engine: SecureEngine, namespace: Settings,
                                                       changes: dict, why: str) -> None:
    changes = {**changes}
    if changes.get("search_ca_file") == "other":
        changes["search_ca_file"] = secure_engine.other_ca_file
    if changes.get("elasticsearch_node") == "ip":
        changes["elasticsearch_node"] = f"https://127.0.0.1:{secure_engine.port}"
    text = _refused(_through(secure_engine, namespace, **changes))
    assert why in text and "SEARCH_CA_FILE" in text and "OPENSEARCH_REJECT_UNAUTHORIZED=false" in text


@pytest.mark.parametrize("node", ["localhost", "127.0.0.1"])
def test_only_reject_unauthorized_false_gets_past_a_bad_certificate(secure_engine: SecureEngine,
                                                                    namespace: Settings, node: str) -> None:
    settings = _through(secure_engine, namespace, search_ca_file=None, opensearch_reject_unauthorized=False,
                        elasticsearch_node=f"https://{node}:{secure_engine.port}")
    store = open_store(settings)
    assert store.ping() and store.engine.name == "opensearch"
    store.close()
    # ... and the password is still checked.
    _refused(settings.replace(opensearch_password="wrong-pw"))
