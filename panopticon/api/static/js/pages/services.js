// Services: one row per service and environment with requests, error rate and percentiles, a sparkline of
// each; sortable and searchable. The table paints from one /query/services call; sparklines follow, a few at
// a time.

import { get, pool } from "../api.js";
import { sparkline } from "../charts.js";
import { clear, h, note } from "../dom.js";
import * as fmt from "../format.js";
import * as state from "../state.js";

const SPARK_POINTS = 40;
const LADDER_MIN = [1, 5, 10, 15, 30, 60, 180, 360, 720, 1440];
const COLUMNS = [
  { key: "service_name", label: "Service", numeric: false },
  { key: "environment", label: "Environment", numeric: false },
  { key: "requests", label: "Requests", numeric: true },
  { key: "rpm", label: "Req/min", numeric: true, sortKey: "requests" },
  { key: "error_rate", label: "Error rate", numeric: true },
  { key: "p50", label: "p50", numeric: true },
  { key: "p95", label: "p95", numeric: true },
  { key: "p99", label: "p99", numeric: true },
];
const SPARKS = [
  { key: "requests", label: "Requests", colour: "#0b5cad" },
  { key: "error_rate", label: "Error rate", colour: "#b00020" },
  { key: "p95", label: "p95", colour: "#6a3d9a" },
];

function sparkInterval(fromIso, toIso) {
  const minutes = fmt.minutesBetween(fromIso, toIso);
  const step = LADDER_MIN.find((m) => Math.ceil(minutes / m) <= SPARK_POINTS) || LADDER_MIN.at(-1);
  return `${step}m`;
}

const rowKey = (row) => JSON.stringify([row.service_name, row.environment]);

function sortRows(rows, key, order) {
  const sign = order === "asc" ? 1 : -1;
  const byName = (a, b) => a.service_name.localeCompare(b.service_name) || a.environment.localeCompare(b.environment);
  if (key === "service_name") return [...rows].sort((a, b) => sign * byName(a, b));
  if (key === "environment") {
    return [...rows].sort((a, b) => sign * a.environment.localeCompare(b.environment) || byName(a, b));
  }
  const present = rows.filter((r) => r[key] !== null && r[key] !== undefined);
  const absent = rows.filter((r) => r[key] === null || r[key] === undefined).sort(byName);
  return [...present.sort((a, b) => sign * (a[key] - b[key]) || byName(a, b)), ...absent];
}

function cell(field, value, text) {
  return h("td", { class: "num", dataset: { field, value: value === null ? "" : String(value) } }, text);
}

function errorCell(row) {
  const td = cell("error_rate", row.error_rate, fmt.percent(row.error_rate));
  if (row.errors > 0) td.prepend(h("span", { class: "err-glyph", "aria-hidden": "true" }, "▲ "));
  td.dataset.errors = String(row.errors);
  return td;
}

export async function render(ctx) {
  const { main, params, signal, range } = ctx;
  const env = params.get("env") || "";
  const sort = params.get("sort") || "requests";
  const order = params.get("order") || (sort === "service_name" ? "asc" : "desc");
  const search = h("input", { type: "search", id: "service-search", placeholder: "Filter services",
    "aria-label": "Filter services by name", value: params.get("q") || "" });
  const summary = h("p", { class: "muted", id: "services-summary" });
  const table = h("table", { class: "grid", id: "services-table" });
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Services"), search), summary, table);

  let answer = null;
  const sparks = new Map(); // rowKey -> metrics answer
  const shown = new Map(); // rowKey -> its <tr>

  function drawHead() {
    const head = h("tr", {});
    for (const column of COLUMNS) {
      const key = column.sortKey || column.key;
      const active = key === sort && column.key !== "rpm";
      const next = active && order === "desc" ? "asc" : "desc";
      head.append(h("th", { scope: "col", class: column.numeric ? "num" : "",
        "aria-sort": active ? (order === "asc" ? "ascending" : "descending") : null },
      h("a", { href: state.href("services", null, { ...Object.fromEntries(params), sort: key, order: next }) },
        column.label, active ? (order === "asc" ? " ▲" : " ▼") : "")));
    }
    for (const spark of SPARKS) head.append(h("th", { scope: "col" }, `${spark.label} over time`));
    return h("thead", {}, head);
  }

  function drawSparks(tr, row) {
    const series = sparks.get(rowKey(row));
    for (const spark of SPARKS) {
      const td = tr.querySelector(`td[data-spark="${spark.key}"]`);
      if (!td || !series) continue;
      clear(td).append(sparkline(series.buckets.map((b) => b[spark.key]),
        { label: `${spark.label} of ${row.service_name} in ${row.environment} over time`, colour: spark.colour }));
    }
  }

  function drawBody() {
    const minutes = fmt.minutesBetween(answer.from, answer.to);
    const filter = search.value.trim().toLowerCase();
    const rows = sortRows(answer.items.filter((r) => r.service_name.toLowerCase().includes(filter)), sort, order);
    table.dataset.rows = String(rows.length);
    const body = h("tbody", {});
    shown.clear();
    for (const row of rows) {
      const link = h("a", { href: state.href("service", row.service_name, { env: row.environment }), class: "svc" },
        row.service_name);
      const tr = h("tr", { dataset: { service: row.service_name, environment: row.environment, key: rowKey(row) } },
        h("th", { scope: "row" }, link),
        h("td", {}, row.environment),
        cell("requests", row.requests, fmt.count(row.requests)),
        cell("rpm", row.requests / minutes, fmt.perMinute(row.requests, minutes)),
        errorCell(row),
        cell("p50", row.p50, fmt.ms(row.p50)),
        cell("p95", row.p95, fmt.ms(row.p95)),
        cell("p99", row.p99, fmt.ms(row.p99)),
        ...SPARKS.map((s) => h("td", { class: "spark-cell", dataset: { spark: s.key } }, h("span", { class: "muted" }, "…"))));
      body.append(tr);
      shown.set(rowKey(row), tr);
      drawSparks(tr, row);
    }
    clear(table).append(drawHead(), body);
    if (!rows.length) table.append(h("tbody", {}, h("tr", {}, h("td", { colspan: 11 },
      answer.items.length ? "No service matches the filter." : "No requests in this range."))));
    const services = new Set(answer.items.map((r) => r.service_name)).size;
    summary.textContent = `${services} services in ${answer.total} service–environment pairs, ` +
      `${fmt.time(answer.from)} – ${fmt.time(answer.to)}` +
      `${env ? `, environment ${env}` : ", every environment"}.`;
    if (answer.total > answer.items.length) summary.textContent += ` Showing the first ${answer.items.length}.`;
  }

  async function loadSparks() {
    const interval = sparkInterval(answer.from, answer.to);
    await pool(answer.items.map((row) => async () => {
      try {
        const series = await get(`/query/services/${encodeURIComponent(row.service_name)}/metrics`,
          { start: answer.from, end: answer.to, environment: row.environment, interval }, signal);
        sparks.set(rowKey(row), series);
        const tr = shown.get(rowKey(row));
        if (tr) drawSparks(tr, row);
      } catch (exc) {
        if (exc.name !== "AbortError") throw exc;
      }
    }), 4);
    performance.mark("panopticon:services-sparks");
    table.dataset.sparks = "done";
  }

  async function update() {
    answer = await get("/query/services", { ...range, environment: env, limit: 500, sort: "requests", by_environment: "true" },
      signal);
    table.dataset.from = answer.from;
    table.dataset.to = answer.to;
    drawBody();
    performance.mark("panopticon:services-table");
    table.dataset.ready = "true";
    loadSparks().catch(ctx.failed);
  }

  search.addEventListener("input", () => {
    state.update({ q: search.value.trim() }, { replace: true });
    if (answer) drawBody();
  });
  try {
    await update();
  } catch (exc) {
    if (exc.name === "AbortError") return null;
    if (exc.status) {
      main.append(note(`Could not load services: ${exc.message}`, "error"));
      return { update };
    }
    throw exc;
  }
  return { update };
}

