// One service: charts of requests, errors, error rate and latency percentiles over time, in the buckets the
// API chose; where the answer came from (rollups, raw spans, late data); the endpoint ranking with each
// endpoint's slowest and failed traces.

import { get } from "../api.js";
import { timeChart } from "../charts.js";
import { clear, errorMark, h, note } from "../dom.js";
import * as fmt from "../format.js";
import * as state from "../state.js";

const INTERVALS = ["", "1m", "5m", "15m", "1h", "6h", "1d"];
const LATENCY = [
  { key: "p50", colour: "#0072B2", dash: undefined },
  { key: "p90", colour: "#009E73", dash: [6, 3] },
  { key: "p95", colour: "#D55E00", dash: [2, 2] },
  { key: "p99", colour: "#7B4FA0", dash: [8, 3, 2, 3] },
];
const STATS = [
  ["requests", "Requests", fmt.count],
  ["errors", "Errors", fmt.count],
  ["error_rate", "Error rate", fmt.percent],
  ["p50", "p50", fmt.ms],
  ["p90", "p90", fmt.ms],
  ["p95", "p95", fmt.ms],
  ["p99", "p99", fmt.ms],
];

function statList(summary, minutes) {
  const list = h("dl", { class: "stats", id: "service-summary" });
  for (const [key, label, format] of STATS) {
    list.append(h("div", { dataset: { field: key, value: summary[key] === null ? "" : String(summary[key]) } },
      h("dt", {}, label), h("dd", {}, format(summary[key]))));
  }
  list.append(h("div", { dataset: { field: "rpm" } }, h("dt", {}, "Req/min"),
    h("dd", {}, fmt.perMinute(summary.requests, minutes))));
  return list;
}

/** Where the numbers came from: rollups, raw spans (hatched on the charts), and late data when reported. */
function sourcesNote(answer) {
  const { sources } = answer;
  const box = h("div", { class: "sources", id: "sources" });
  box.append(h("p", {}, `Buckets of ${answer.interval}, ${fmt.time(answer.from)} – ${fmt.time(answer.to)}.`));
  if (sources.rollup) {
    box.append(h("p", { dataset: { source: "rollup" } }, `From rollups: ${fmt.time(sources.rollup.from)} – ` +
      `${fmt.time(sources.rollup.to)} (${fmt.count(sources.rollup.documents)} documents, ` +
      `tiers ${sources.rollup.tiers.join(", ") || "none"}).`));
  }
  if (sources.raw.length) {
    box.append(h("p", { dataset: { source: "raw" } },
      h("span", { class: "hatch-key", "aria-hidden": "true" }), "Hatched on the charts: read from raw spans, ",
      sources.raw.map((r) => `${fmt.time(r.from)} – ${fmt.time(r.to)}`).join("; "), "."));
  }
  if (sources.complete === false) {
    box.append(h("p", { class: "warn", dataset: { source: "incomplete" } }, h("span", { "aria-hidden": "true" }, "⚠ "),
      "Part of this range may still change: late spans can still arrive for it."));
  } else if (sources.complete === true) {
    box.append(h("p", { dataset: { source: "complete" } }, "Complete: no part of this range is expected to change."));
  }
  if (typeof sources.late_spans === "number" && sources.late_spans > 0) {
    box.append(h("p", { class: "warn", dataset: { source: "late" } }, h("span", { "aria-hidden": "true" }, "⚠ "),
      `${fmt.count(sources.late_spans)} spans arrived after their window was rolled up; they were read from raw spans.`));
  }
  return box;
}

function spanList(title, spans, service) {
  const box = h("div", { class: "trace-list" }, h("h4", {}, title));
  if (!spans.length) {
    box.append(h("p", { class: "muted" }, "None in this range."));
    return box;
  }
  const list = h("ol", {});
  for (const span of spans) {
    list.append(h("li", {},
      h("a", { href: state.href("trace", span.trace_id), dataset: { trace: span.trace_id } }, span.trace_id.slice(0, 16)),
      ` ${fmt.time(span.start_time)} · ${fmt.ms(span.duration_ms)} `,
      span.is_error ? errorMark(span.http && span.http.status_code ? `error ${span.http.status_code}` : "error") : "",
      span.service_name !== service ? ` (${span.service_name})` : ""));
  }
  box.append(list);
  return box;
}

export async function render(ctx) {
  const { main, arg: service, params, signal, range } = ctx;
  const env = params.get("env") || "";
  const interval = params.get("interval") || "";
  const picker = h("select", { id: "interval", "aria-label": "Bucket size" },
    INTERVALS.map((i) => h("option", { value: i, selected: i === interval }, i ? `per ${i}` : "auto buckets")));
  picker.addEventListener("change", () => state.update({ interval: picker.value }));
  const head = h("div", { class: "page-head" },
    h("h1", {}, h("span", { class: "muted" }, "Service "), service),
    h("nav", { class: "links", "aria-label": "This service elsewhere" },
      h("a", { href: state.href("logs", null, { service }) }, "Logs"),
      h("a", { href: state.href("live", null, { service }) }, "Live errors")),
    picker);
  const summaryBox = h("div", {});
  const sourcesBox = h("div", {});
  const charts = h("div", { class: "charts" });
  const boxes = { requests: h("div", { class: "chart", id: "chart-requests" }),
    rate: h("div", { class: "chart", id: "chart-error-rate" }),
    latency: h("div", { class: "chart", id: "chart-latency" }) };
  charts.append(boxes.requests, boxes.rate, boxes.latency);
  const endpoints = h("section", { id: "endpoints" });
  main.append(head, summaryBox, sourcesBox, charts, endpoints);
  let plots = [];

  function drawCharts(answer) {
    performance.mark("panopticon:charts-start");
    plots.forEach((p) => p.destroy());
    const times = answer.buckets.map((b) => b.time_ms);
    const marks = answer.sources.raw.map((r) => ({ from_ms: Date.parse(r.from), to_ms: Date.parse(r.to) }));
    const column = (key, scale = 1) => answer.buckets.map((b) => (b[key] === null ? null : b[key] * scale));
    for (const box of Object.values(boxes)) clear(box);
    plots = [
      timeChart(boxes.requests, { title: `Requests and errors per ${answer.interval}`, times, marks, format: fmt.count,
        series: [{ label: "requests", values: column("requests"), colour: "#0b5cad" },
          { label: "errors", values: column("errors"), colour: "#b00020", dash: [5, 3] }] }),
      timeChart(boxes.rate, { title: "Error rate", times, marks, format: (v) => `${v.toFixed(2)}%`,
        series: [{ label: "error rate", values: column("error_rate", 100), colour: "#b00020" }] }),
      timeChart(boxes.latency, { title: "Latency percentiles", times, marks, format: fmt.ms,
        series: LATENCY.map((l) => ({ label: l.key, values: column(l.key), colour: l.colour, dash: l.dash })) }),
    ];
    charts.dataset.points = String(times.length);
    performance.mark("panopticon:service-charts");
    performance.measure("panopticon:charts-draw", "panopticon:charts-start", "panopticon:service-charts");
  }

  async function showTraces(button, row, endpoint, answer) {
    const open = button.getAttribute("aria-expanded") === "true";
    const next = row.nextElementSibling;
    if (open) {
      if (next && next.classList.contains("detail")) next.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    button.setAttribute("aria-expanded", "true");
    const detail = h("tr", { class: "detail" }, h("td", { colspan: 8 }, h("p", { class: "muted" }, "Loading traces…")));
    row.after(detail);
    try {
      const found = await get(`/query/services/${encodeURIComponent(service)}/endpoints/${encodeURIComponent(endpoint)}/traces`,
        { start: answer.from, end: answer.to, environment: env, limit: 5 }, signal);
      clear(detail.firstChild).append(h("div", { class: "trace-lists" },
        spanList("Slowest", found.slow, service), spanList("Most recent failures", found.errors, service)));
    } catch (exc) {
      if (exc.name === "AbortError") return;
      clear(detail.firstChild).append(note(`Could not load traces: ${exc.message}`, "error"));
    }
  }

  function drawEndpoints(ranking, answer) {
    const minutes = fmt.minutesBetween(ranking.from, ranking.to);
    const table = h("table", { class: "grid", id: "endpoints-table" },
      h("thead", {}, h("tr", {}, ["Endpoint", "Requests", "Req/min", "Error rate", "p50", "p95", "p99", "Traces"]
        .map((label, i) => h("th", { scope: "col", class: i && i < 7 ? "num" : "" }, label)))));
    const body = h("tbody", {});
    for (const row of ranking.items) {
      const button = h("button", { type: "button", class: "small", "aria-expanded": "false" }, "slowest and failed");
      const tr = h("tr", { dataset: { endpoint: row.endpoint } },
        h("th", { scope: "row" }, row.endpoint),
        h("td", { class: "num", dataset: { field: "requests", value: row.requests } }, fmt.count(row.requests)),
        h("td", { class: "num" }, fmt.perMinute(row.requests, minutes)),
        h("td", { class: "num", dataset: { field: "error_rate", value: row.error_rate ?? "" } },
          row.errors > 0 ? h("span", { class: "err-glyph", "aria-hidden": "true" }, "▲ ") : "", fmt.percent(row.error_rate)),
        h("td", { class: "num", dataset: { field: "p50", value: row.p50 ?? "" } }, fmt.ms(row.p50)),
        h("td", { class: "num", dataset: { field: "p95", value: row.p95 ?? "" } }, fmt.ms(row.p95)),
        h("td", { class: "num", dataset: { field: "p99", value: row.p99 ?? "" } }, fmt.ms(row.p99)),
        h("td", {}, button));
      button.addEventListener("click", () => showTraces(button, tr, row.endpoint, answer));
      body.append(tr);
    }
    if (!ranking.items.length) body.append(h("tr", {}, h("td", { colspan: 8 }, "No requests in this range.")));
    table.append(body);
    clear(endpoints).append(h("h2", {}, "Endpoints"), table);
  }

  async function update() {
    const question = { ...range, environment: env };
    const [answer, ranking] = await Promise.all([
      get(`/query/services/${encodeURIComponent(service)}/metrics`, { ...question, interval }, signal),
      get(`/query/services/${encodeURIComponent(service)}/endpoints`, { ...question, limit: 200 }, signal),
    ]);
    clear(summaryBox).append(statList(answer.summary, fmt.minutesBetween(answer.from, answer.to)));
    summaryBox.dataset.from = answer.from;
    summaryBox.dataset.to = answer.to;
    clear(sourcesBox).append(sourcesNote(answer));
    drawCharts(answer);
    drawEndpoints(ranking, answer);
    main.dataset.ready = "true";
  }

  try {
    await update();
  } catch (exc) {
    if (exc.name === "AbortError") return null;
    if (!exc.status) throw exc;
    main.append(note(`Could not load ${service}: ${exc.message}`, "error"));
  }
  return { update, destroy: () => plots.forEach((p) => p.destroy()) };
}
