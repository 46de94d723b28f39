"""Hostile text in every text parameter of the query API: Lucene syntax, regex, script-like and
template text, path tricks, control characters, unicode and very long strings.

Each answer must be 200 or 400 (404 only for an id in the path that names nothing), and must never
match more than a plain text search for the same words would: the same request with the special
characters taken out (or with a word that matches nothing, when no word is left) is the yardstick.
The routes and parameters come from the API's own /openapi.json, so a new parameter is covered the
day it is documented. (Generated valid/invalid requests are in tests/integration/test_query_api.py.)
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from flask.testing import FlaskClient

from panopticon import flow
from panopticon.api import create_app
from panopticon.processing.decoders import decoder_for
from panopticon.processing.schemas import Decoded
from panopticon.settings import Settings
from panopticon.storage import SearchStore
from tests.integration.traffic import make_messages

HOSTILE = [
    "*:*", "*", "?", "a OR b", "NOT nothing", "service_name:*", "message:*", "field:value", "_exists_:message",
    "/.*/", "/[a-z]+/", ".*", "doc['x'].value", "params._source", "{{7*7}}", "${jndi:ldap://x/a}", "#{1}",
    "\") OR 1=1 --", "<script>alert(1)</script>", "\\", "\\*", "\x00", "\t\n", "é漢字🙂", "\u202e", "%", "_",
    "../../etc/passwd", "+-&&||!(){}[]^\"~*?:/", "A" * 5_000,
]
PLAIN_NOTHING = "qzxnomatchqzx"
PATH_IDS = {"serviceName", "traceId", "endpointName"}


def _plain(value: str) -> str:
    """What a plain text search would look for: the words, nothing else."""
    words = re.sub(r"[^\w]+", " ", value, flags=re.UNICODE).strip()
    return words[:200] or PLAIN_NOTHING


def _matched(body: Any) -> int:
    """How much an answer matched: totals where given, else items in lists, plus request counts."""
    if isinstance(body, dict):
        if isinstance(body.get("total"), int):
            return body["total"]
        own = sum(int(v) for k, v in body.items() if k == "requests" and isinstance(v, int | float))
        return own + sum(_matched(v) for v in body.values() if isinstance(v, dict | list))
    if isinstance(body, list):
        return sum(1 + _matched(item) for item in body if isinstance(item, dict))
    return 0


@pytest.fixture
def seeded(namespace: Settings, store: SearchStore) -> dict[str, str]:
    """A few hundred real documents (built by the real decoders), and valid values for path ids."""
    messages, _ = make_messages(namespace.index_prefix, 300, bad_ratio=0.0)
    by_stream: dict[str, list[tuple[str, bytes]]] = {"logs": [], "spans": []}
    for offset, (kind, raw) in enumerate(messages):
        stream = flow.stream("spans" if kind == "span" else "logs")
        (result,) = decoder_for(stream)(raw, topic=stream.topic(namespace), partition=0, offset=offset,
                                        now_ms=int(time.time() * 1000), max_bytes=namespace.max_message_bytes)
        assert isinstance(result, Decoded), result
        by_stream[stream.name].append((result.doc_id, orjson.dumps(result.document)))
    for name, items in by_stream.items():
        assert all(item.stored for item in store.create_many(flow.stream(name).data_stream, items))
    store.refresh(f"{namespace.index_prefix}*")
    return {"serviceName": f"{namespace.index_prefix}-svc", "traceId": f"{namespace.index_prefix}-t0",
            "endpointName": "GET /x"}


def _text_parameters(client: FlaskClient) -> list[tuple[str, str, str]]:
    """(path template, parameter name, where) of every string parameter of every query route."""
    document = client.get("/openapi.json").get_json()
    out = []
    for path, operations in document["paths"].items():
        if not path.startswith("/query/"):
            continue
        for parameter in operations["get"].get("parameters", []):
            if parameter.get("schema", {}).get("type") == "string":
                out.append((path, parameter["name"], parameter["in"]))
    return out


def _url(path: str, ids: dict[str, str], name: str, where: str, value: str) -> str:
    values = {**ids, name: value} if where == "path" else ids
    for key, text in values.items():
        path = path.replace("{" + key + "}", quote(text, safe=""))
    query = {"start": "now-1h", "end": "now"} if name not in ("start", "end") else {}
    if where == "query":
        query[name] = value
    return path + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())


def test_hostile_text_is_200_or_400_and_never_matches_more_than_plain_text(
        namespace: Settings, seeded: dict[str, str]) -> None:
    client = create_app(namespace).test_client()
    parameters = _text_parameters(client)
    assert len(parameters) >= 20, parameters
    problems: list[str] = []
    answered: dict[int, int] = {}
    for path, name, where in parameters:
        for value in HOSTILE:
            response = client.get(_url(path, seeded, name, where, value))
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            allowed = {200, 400} | ({404} if name in PATH_IDS else set())
            if where == "path" and "/" in value:
                # WSGI decodes %2F before routing: the path has more segments, so it is another URL
                # (a slash-merging redirect, or no route), never a wider query.
                allowed |= {308, 404}
            label = f"{path} {name}={value[:40]!r}"
            if response.status_code not in allowed:
                problems.append(f"{label}: {response.status_code} {response.get_data(as_text=True)[:200]}")
                continue
            if response.status_code == 400:
                assert (response.get_json() or {}).get("error"), f"{label}: a 400 says what was wrong"
                continue
            if response.status_code != 200:
                continue
            plain = client.get(_url(path, seeded, name, where, _plain(value)))
            got, yardstick = _matched(response.get_json()), _matched(plain.get_json() or {})
            if got > yardstick:
                problems.append(f"{label}: matched {got}, a plain text search matches {yardstick}")
    assert not problems, "\n".join(problems[:30])
    assert answered.get(200, 0) > 0 and answered.get(400, 0) > 0, answered


GENERATED_MINIMUM = 5_000
DEADLINE_S = 3.0


def test_thousands_of_generated_requests_never_5xx_and_never_pass_the_deadline(
        namespace: Settings, seeded: dict[str, str]) -> None:
    """Valid and invalid requests generated from /openapi.json over every route, at least 5,000 of them:
    never a 5xx, and every one answered within the request deadline (plus the engine client's margin)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    app = create_app(namespace.replace(query_timeout_seconds=DEADLINE_S))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Twice what is needed on paper: routes with few parameters run out of distinct cases early.
    per_operation = 2 * GENERATED_MINIMUM // len(operations)
    statuses: dict[int, int] = {}
    slowest = 0.0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=per_operation // 2 + 1, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case) -> None:
                nonlocal slowest
                started = time.monotonic()
                response = case.call(app=app)
                slowest = max(slowest, time.monotonic() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:300])

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to make invalid: a route without parameters
    total = sum(statuses.values())
    assert total >= GENERATED_MINIMUM, statuses
    assert not [code for code in statuses if code >= 500], statuses
    assert slowest <= DEADLINE_S + 2, f"a request took {slowest:.1f}s, past the {DEADLINE_S}s deadline"
