"""The only module that imports `elasticsearch` or `opensearchpy`.

Each engine gets a thin transport with one method, `request`, that sends a REST call and returns the
parsed body; everything above it (templates, bulk, search) is the same REST API on both engines. The
engine's own exceptions are translated here, at the door, into `EngineUnavailable` (transient: retry),
`EngineRejected` (permanent: the request itself is wrong) and `EngineMisconfigured` (our credentials or
the engine's certificate were refused; the message names the variable to fix, and never its value).

Why two clients: the official `elasticsearch` client refuses to talk to anything that does not send
`X-Elastic-Product: Elasticsearch`, and `opensearch-py` is the maintained client for OpenSearch.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from panopticon.exceptions import ConfigError, EngineMisconfigured, EngineRejected, EngineUnavailable
from panopticon.settings import Settings

log = logging.getLogger(__name__)

_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class EngineInfo:
    """Engine and version, decided once (jaeger keeps the same single value)."""

    name: str  # "opensearch" or "elasticsearch"
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


class Transport(Protocol):
    info: EngineInfo

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
        headers: dict[str, str] | None = None, timeout: float | None = None,
    ) -> Any: ...

    def close(self) -> None: ...


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not any(node.startswith("https") for node in settings.search_nodes):
        return None
    context = ssl.create_default_context(cafile=settings.search_ca_file)
    if not settings.opensearch_reject_unauthorized:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _auth(settings: Settings) -> tuple[str, str] | None:
    if settings.opensearch_username:
        return (settings.opensearch_username, settings.opensearch_password or "")
    return None


def _untrusted(engine: str, settings: Settings, exc: Exception) -> EngineMisconfigured:
    """A TLS failure: the certificate is not signed by a CA we trust, or does not name the host we asked."""
    detail = str(exc)
    reason = "its certificate does not name this host" if "match" in detail.lower() else \
        "its certificate is not signed by a CA we trust"
    ca = f"SEARCH_CA_FILE={settings.search_ca_file}" if settings.search_ca_file else "SEARCH_CA_FILE is empty"
    return EngineMisconfigured(
        f"{engine} TLS verification failed at {', '.join(settings.search_nodes)}: {reason} ({ca}; set "
        "SEARCH_CA_FILE to the CA that signed it and use the host name the certificate names in "
        "ELASTICSEARCH_NODE; OPENSEARCH_REJECT_UNAUTHORIZED=false skips the check, insecurely)", None)


def _refused_credentials(engine: str, settings: Settings, status: int) -> EngineMisconfigured:
    who = f"OPENSEARCH_USERNAME={settings.opensearch_username}" if settings.opensearch_username else \
        "OPENSEARCH_USERNAME is empty"
    what = "refused the credentials" if status == 401 else "does not allow this user to do that"
    return EngineMisconfigured(f"{engine} {what} ({status}; {who}): check OPENSEARCH_USERNAME and "
                               "OPENSEARCH_PASSWORD", status)


def _problem(status: int | None, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{status} {error.get('type')}: {error.get('reason')}"
    return f"{status} {str(body)[:300]}"


def _orjson_serializer() -> Any:
    """opensearch-py's JSON serializer with orjson: the answer to a 5,000-document bulk is parsed on every
    batch, and the standard library's json was a tenth of the worker's time (bench/)."""
    import orjson
    from opensearchpy.serializer import JSONSerializer

    class OrjsonSerializer(JSONSerializer):
        def loads(self, s: str | bytes) -> Any:
            return orjson.loads(s)

        def dumps(self, data: Any) -> str | bytes:
            if isinstance(data, str | bytes):
                return data
            return orjson.dumps(data, default=self.default, option=orjson.OPT_SERIALIZE_NUMPY)

    return OrjsonSerializer()


def _elastic_orjson() -> Any:
    from elastic_transport import OrjsonSerializer

    return OrjsonSerializer()


class OpenSearchTransport:
    def __init__(self, settings: Settings, info: EngineInfo | None = None) -> None:
        from opensearchpy import OpenSearch

        self._settings = settings
        self._client = OpenSearch(
            hosts=settings.search_nodes,
            http_auth=_auth(settings),
            ssl_context=_ssl_context(settings),
            timeout=settings.search_timeout_seconds,
            max_retries=0,
            serializer=_orjson_serializer(),
        )
        self.info = info or EngineInfo("opensearch", "unknown")

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                headers: dict[str, str] | None = None, timeout: float | None = None) -> Any:
        from opensearchpy import exceptions as os_exc

        params = dict(params or {})
        if timeout is not None:
            params["request_timeout"] = timeout
        try:
            return self._client.transport.perform_request(method, path, params=params, body=body, headers=headers)
        except os_exc.SSLError as exc:
            raise _untrusted("opensearch", self._settings, exc) from exc
        except (os_exc.ConnectionError, os_exc.ConnectionTimeout) as exc:
            raise EngineUnavailable(f"opensearch unreachable: {exc.__class__.__name__}") from exc
        except os_exc.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            if status in (401, 403):
                raise _refused_credentials("opensearch", self._settings, status) from exc
            message = _problem(status, exc.info)
            if status in _TRANSIENT_STATUSES:
                raise EngineUnavailable(message) from exc
            raise EngineRejected(message, status) from exc

    def close(self) -> None:
        self._client.close()


class ElasticsearchTransport:
    def __init__(self, settings: Settings, info: EngineInfo | None = None) -> None:
        from elasticsearch import Elasticsearch

        self._settings = settings
        self._client = Elasticsearch(
            hosts=settings.search_nodes,
            basic_auth=_auth(settings),
            ssl_context=_ssl_context(settings),
            request_timeout=settings.search_timeout_seconds,
            max_retries=0,
            # The same reason as _orjson_serializer; elastic-transport ships one.
            serializers={"application/json": _elastic_orjson()},
        )
        self.info = info or EngineInfo("elasticsearch", "unknown")

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                headers: dict[str, str] | None = None, timeout: float | None = None) -> Any:
        import elastic_transport
        from elasticsearch import ApiError

        client = self._client if timeout is None else self._client.options(request_timeout=timeout)
        # `is not None`: an empty body ({} or b"") still needs a content-type, or the client raises ValueError.
        headers = {"accept": "application/json",
                   **({"content-type": "application/json"} if body is not None else {}), **(headers or {})}
        if params:
            path = f"{path}?{urlencode(params)}"
        try:
            return client.perform_request(method, path, headers=headers, body=body).body
        except elastic_transport.TlsError as exc:
            raise _untrusted("elasticsearch", self._settings, exc) from exc
        except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
            raise EngineUnavailable(f"elasticsearch unreachable: {exc.__class__.__name__}") from exc
        except ApiError as exc:
            if exc.meta.status in (401, 403):
                raise _refused_credentials("elasticsearch", self._settings, exc.meta.status) from exc
            message = _problem(exc.meta.status, exc.body)
            if exc.meta.status in _TRANSIENT_STATUSES:
                raise EngineUnavailable(message) from exc
            raise EngineRejected(message, exc.meta.status) from exc

    def close(self) -> None:
        self._client.close()


def import_clients(settings: Settings) -> None:
    """Import the configured engine's client library now, in a process about to fork workers (Celery's prefork
    pool): the children share the modules instead of each importing them on its first batch, which was most
    of that batch's set-up (a child's first `_resources()`: 0.14 s of CPU, 0.02 s with the import done; importing
    opensearch-py takes 0.12 s here, elasticsearch 0.21 s). `auto` imports opensearch-py only: `detect_engine`
    probes with it, whatever the engine."""
    import opensearchpy  # noqa: F401

    if settings.search_engine == "elasticsearch":
        import elasticsearch  # noqa: F401


def detect_engine(settings: Settings) -> EngineInfo:
    """Ask the node what it is. OpenSearch says so in `version.distribution`; Elasticsearch does not.

    OpenSearch always serves `GET /`; Elasticsearch 9 serves it from its `rest-root` module, which
    builds without it (Maven Central's integ-test zip) lack: they answer 405, and the version is
    read from the node info instead.
    """
    probe = OpenSearchTransport(settings)
    try:
        try:
            root = probe.request("GET", "/")
        except EngineRejected as exc:
            if exc.status not in (404, 405):
                raise
            nodes = probe.request("GET", "/_nodes/_local", params={"filter_path": "nodes.*.version"})
            return EngineInfo("elasticsearch", str(next(iter(nodes["nodes"].values()))["version"]))
    finally:
        probe.close()
    version = root.get("version", {})
    name = "opensearch" if version.get("distribution") == "opensearch" else "elasticsearch"
    return EngineInfo(name, str(version.get("number", "unknown")))


def open_transport(settings: Settings) -> Transport:
    """The transport for the configured (or detected) engine."""
    if settings.search_engine == "opensearch":
        return OpenSearchTransport(settings)
    if settings.search_engine == "elasticsearch":
        return ElasticsearchTransport(settings)
    info = detect_engine(settings)
    log.info("search engine detected: %s %s", info.name, info.version)
    if info.name == "opensearch":
        return OpenSearchTransport(settings, info)
    if info.major < 8:
        raise ConfigError(f"ELASTICSEARCH_NODE: Elasticsearch {info.version} is too old (need 8 or newer)")
    return ElasticsearchTransport(settings, info)
