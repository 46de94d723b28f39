// Logs: search by service, environment, level, text and trace id; pages follow the API's cursor, so going
// deep stays fast. A log with a trace id links to its trace.

import { get } from "../api.js";
import { h, note } from "../dom.js";
import * as fmt from "../format.js";
import * as state from "../state.js";

const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const PAGE = 100;

function field(label, name, value, attrs = {}) {
  return h("label", {}, label, h("input", { name, value: value || "", ...attrs }));
}

function row(log) {
  const error = log.level === "ERROR" || log.level === "FATAL";
  return h("tr", { dataset: { id: log.id, level: log.level } },
    h("td", { class: "nowrap" }, fmt.time(log.timestamp, true)),
    h("td", {}, h("span", { class: `level level-${log.level}` }, error ? h("span", { "aria-hidden": "true" }, "✖ ") : "", log.level)),
    h("td", {}, h("a", { href: state.href("service", log.service_name) }, log.service_name)),
    h("td", {}, log.environment || "–"),
    h("td", { class: "message" }, log.message),
    h("td", {}, log.trace_id ? h("a", { href: state.href("trace", log.trace_id), dataset: { trace: log.trace_id } },
      log.trace_id.slice(0, 16)) : h("span", { class: "muted" }, "–")));
}

export async function render(ctx) {
  const { main, params, signal, range } = ctx;
  const chosen = new Set((params.get("level") || "").split(",").filter(Boolean));
  const form = h("form", { class: "filters", id: "log-filters", role: "search" },
    field("Service", "service", params.get("service"), { size: 14 }),
    field("Text", "q", params.get("q"), { type: "search", size: 20, placeholder: "every word must appear" }),
    field("Trace id", "trace_id", params.get("trace_id"), { size: 22 }),
    h("fieldset", {}, h("legend", {}, "Levels"), LEVELS.map((level) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: "level", value: level, checked: chosen.has(level) }), level))),
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    state.update({ service: data.get("service").trim(), q: data.get("q").trim(), trace_id: data.get("trace_id").trim(),
      level: data.getAll("level").join(",") });
  });
  const status = h("p", { class: "muted", id: "logs-status", role: "status" });
  const body = h("tbody", {});
  const table = h("table", { class: "grid", id: "logs-table" },
    h("thead", {}, h("tr", {}, ["Time", "Level", "Service", "Environment", "Message", "Trace"].map((l) => h("th", { scope: "col" }, l)))),
    body);
  const more = h("button", { type: "button", id: "logs-more", hidden: true }, `Next ${PAGE}`);
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Logs")), form, status, table, more);

  const question = { ...range, service: params.get("service"), environment: params.get("env"),
    level: params.get("level"), q: params.get("q"), trace_id: params.get("trace_id"), limit: PAGE };
  let cursor = null;
  let shown = 0;

  async function load(reset) {
    more.disabled = true; // one page at a time: a second click waits for this page's cursor
    let page;
    try {
      page = await get("/query/logs", { ...question, cursor: reset ? null : cursor }, signal);
    } finally {
      more.disabled = false;
    }
    if (reset) {
      body.replaceChildren();
      shown = 0;
    }
    for (const log of page.items) body.append(row(log));
    shown += page.items.length;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    table.dataset.total = String(page.total);
    status.textContent = `${fmt.count(shown)} of ${fmt.count(page.total)} logs, ${fmt.time(page.from)} – ${fmt.time(page.to)}, newest first.`;
    if (!page.total) status.textContent = `No logs match, ${fmt.time(page.from)} – ${fmt.time(page.to)}.`;
    main.dataset.ready = "true";
  }

  more.addEventListener("click", () => load(false).catch((exc) => {
    if (exc.name !== "AbortError") main.append(note(`Could not load more: ${exc.message}`, "error"));
  }));
  try {
    await load(true);
  } catch (exc) {
    if (exc.name === "AbortError") return null;
    if (!exc.status) throw exc;
    main.append(note(`Could not search: ${exc.message}`, "error"));
  }
  return { update: () => load(true) };
}
