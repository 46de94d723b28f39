"""The service map in a real browser: the dashboard's map page, and the Zipkin UI (Lens, a UI no one here wrote)
served at /zipkin/ on our /api/v2, against the real processes and sample traffic (which calls a database, an
external API and a queue). Screenshots under docs/screenshots/ (shown in the README).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect

from tests.browser.conftest import TOKEN, Console, Dashboard, screenshot

LOAD_MS = 60_000


def _span(body: dict) -> dict:
    get = lambda snake, camel: body.get(snake, body.get(camel))  # noqa: E731
    return {"trace_id": get("trace_id", "traceId"), "span_id": get("span_id", "spanId"),
            "parent": get("parent_span_id", "parentSpanId"), "service": get("service_name", "serviceName"),
            "kind": body["kind"], "error": body["status"] == "ERROR", "attributes": body.get("attributes") or {}}


def expected_calls(dashboard: Dashboard) -> dict[tuple[str, str], tuple[int, int]]:
    """{(caller, callee): (calls, errors)} by the issue's rules, from the produced sample messages."""
    spans = [_span(m.body) for m in dashboard.messages if m.kind == "span"]
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    answered = defaultdict(set)
    for s in spans:
        if s["parent"]:
            answered[(s["trace_id"], s["parent"])].add(s["service"])
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for s in spans:
        parent = by_id.get((s["trace_id"], s["parent"]))
        if parent and parent["service"] != s["service"]:
            out[(parent["service"], s["service"])][0] += 1
            out[(parent["service"], s["service"])][1] += s["error"]
        a = s["attributes"]
        peer = a.get("peer.service") or a.get("db.system") or a.get("messaging.system")
        unanswered = not answered[(s["trace_id"], s["span_id"])] - {s["service"]}
        if s["kind"] in ("CLIENT", "PRODUCER") and peer and unanswered:
            out[(s["service"], peer)][0] += 1
            out[(s["service"], peer)][1] += s["error"]
    return {key: (calls, errors) for key, (calls, errors) in out.items()}


def _no_console_errors(console: Console) -> None:
    assert console.errors == [], console.errors


# --- the dashboard's page 6 -----------------------------------------------------------------------------------
def test_map_page_draws_every_node_and_edge_with_the_apis_numbers(dashboard: Dashboard, page: Page,
                                                                   console: Console) -> None:
    page.goto(f"{dashboard.url}/#/map?{dashboard.range_query}")
    page.wait_for_selector("main[data-ready=true] #map-graph", timeout=LOAD_MS)
    truth = dashboard.api("/query/dependencies", start=dashboard.start_ms, end=dashboard.end_ms)
    rows = page.eval_on_selector_all("#map-edges tbody tr", """rows => rows.map(r => ({
        caller: r.dataset.caller, callee: r.dataset.callee,
        ...Object.fromEntries([...r.querySelectorAll('[data-field]')].map(c => [c.dataset.field, c.dataset.value])),
        text: r.innerText}))""")
    assert [(r["caller"], r["callee"]) for r in rows] == [(e["caller"], e["callee"]) for e in truth["edges"]]
    for row, edge in zip(rows, truth["edges"], strict=True):
        assert int(row["calls"]) == edge["calls"] and int(row["errors"]) == edge["errors"], row
        assert float(row["error_rate"]) == edge["error_rate"] and float(row["p95"]) == edge["p95"]
        if edge["errors"]:
            assert "▲" in row["text"], "errors are marked by a glyph, not colour alone"
    # The numbers equal the truth computed from what was produced, not only the API's.
    assert {(e["caller"], e["callee"]): (e["calls"], e["errors"]) for e in truth["edges"]} == expected_calls(dashboard)
    drawn = page.eval_on_selector_all("#map-graph g.edge", "gs => gs.map(g => [g.dataset.caller, g.dataset.callee, "
                                                           "g.dataset.calls, g.querySelector('text').textContent])")
    assert sorted((c, e, int(n)) for c, e, n, _ in drawn) == sorted(
        (e["caller"], e["callee"], e["calls"]) for e in truth["edges"])
    for _, _, calls, label in drawn:
        assert label.startswith(f"{int(calls):,} calls")
    kinds = dict(page.eval_on_selector_all("#map-graph g.node", "gs => gs.map(g => [g.dataset.name, g.dataset.kind])"))
    assert kinds == {n["name"]: n["kind"] for n in truth["nodes"]}
    assert (kinds["postgresql"], kinds["stripe"], kinds["kafka"]) == ("database", "external", "queue")
    screenshot(page, "map")

    page.click("#map-graph g.node[data-name=checkout] a")
    page.wait_for_selector("#service-summary", timeout=LOAD_MS)
    assert "#/service/checkout?" in page.url and f"start={dashboard.start_ms}" in page.url

    page.goto(f"{dashboard.url}/#/map?{dashboard.range_query}&service=checkout")
    page.wait_for_selector("main[data-ready=true] #map-graph", timeout=LOAD_MS)
    around = page.eval_on_selector_all("#map-edges tbody tr", "rows => rows.map(r => [r.dataset.caller, "
                                                               "r.dataset.callee])")
    assert around and all("checkout" in pair for pair in around)
    assert {tuple(pair) for pair in around} == {k for k in expected_calls(dashboard) if "checkout" in k}
    expect(page.locator("nav a[data-page=map]")).to_have_attribute("aria-current", "page")
    _no_console_errors(console)


# --- the Zipkin UI (Lens) -------------------------------------------------------------------------------------
def _lens_query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_zipkin_ui_searches_a_service_opens_a_trace_and_draws_the_dependency_graph(
        dashboard: Dashboard, page: Page, console: Console) -> None:
    page.goto(f"{dashboard.url}/zipkin/")
    page.wait_for_selector("text=RUN QUERY", timeout=LOAD_MS)
    page.click("[data-testid=add-button]")
    page.keyboard.type("serviceName=gateway")
    page.keyboard.press("Enter")
    with page.expect_request(lambda r: "/zipkin/api/v2/traces?" in r.url) as asked:
        page.click("text=RUN QUERY")
    page.wait_for_selector("[data-testid=TraceSummaryRow-duration]", timeout=LOAD_MS)
    query = _lens_query(asked.value.url)
    assert query["serviceName"] == "gateway" and {"endTs", "lookback", "limit"} <= set(query)
    # Lens asked our /zipkin/api/v2/traces; ask the very same question of /api/v2 and compare what it drew.
    traces = dashboard.api("/api/v2/traces", **query)
    assert traces, "the last 15 minutes hold gateway traces"
    shown = page.eval_on_selector_all(
        "[data-testid=TraceSummaryRow-duration]",
        "els => els.map(e => { const row = e.closest('tr') || e.parentElement.parentElement; return row.innerText; })")
    assert len(shown) == len(traces)
    roots = sorted(f"{t[0]['localEndpoint']['serviceName']}: {_root(t)['name']}" for t in traces)
    assert sorted(re.search(r"gateway: [^\n\t]+", text).group(0).strip() for text in shown) == roots
    screenshot(page, "zipkin-search")

    page.locator("text=SHOW").first.click()
    page.wait_for_url(re.compile(r".*/zipkin/traces/[0-9a-f]+"), timeout=LOAD_MS)
    trace_id = page.url.rsplit("/", 1)[1]
    spans = dashboard.api(f"/api/v2/trace/{trace_id}")
    expect(page.locator("body")).to_contain_text(f"Total Spans{len(spans)}", timeout=LOAD_MS)
    text = page.inner_text("body")
    for span in spans:
        assert span["name"] in text, span["name"]
    screenshot(page, "zipkin-trace")

    page.click("text=Dependencies")
    with page.expect_request(lambda r: "/zipkin/api/v2/dependencies?" in r.url) as asked:
        page.click("[data-testid=search-button]")
    page.wait_for_selector("[data-testid=dependencies-graph]", timeout=LOAD_MS)
    query = _lens_query(asked.value.url)
    assert {"endTs", "lookback"} <= set(query)
    links = dashboard.api("/api/v2/dependencies", **query)
    page.click("input[aria-autocomplete=list]")  # Lens's filter lists the nodes of the graph it drew
    page.wait_for_selector("[role=option]", timeout=LOAD_MS)
    options = page.eval_on_selector_all("[role=option]", "os => os.map(o => o.textContent.trim())")
    assert set(options) == {name for link in links for name in (link["parent"], link["child"])}
    assert {"postgresql", "stripe", "kafka"} <= set(options)
    page.keyboard.press("Escape")
    page.wait_for_timeout(1500)  # the graph animates its nodes into place
    screenshot(page, "zipkin-dependencies")
    _no_console_errors(console)


def _root(trace: list[dict]) -> dict:
    return next(span for span in trace if "parentId" not in span)


def test_zipkin_ui_files_need_no_token_but_its_api_calls_do(dashboard: Dashboard) -> None:
    for path, status in (("/zipkin/", 200), ("/zipkin/config.json", 200), ("/zipkin/traces/abc", 200),
                         ("/zipkin/api/v2/services", 401), ("/api/v2/services", 401), ("/api/services", 401)):
        try:
            with urllib.request.urlopen(f"{dashboard.auth_url}{path}", timeout=30) as answer:
                got = answer.status
        except urllib.error.HTTPError as exc:
            got = exc.code
        assert got == status, path
    assert dashboard.api("/api/v2/services", token=TOKEN)  # with the token, the same API answers
