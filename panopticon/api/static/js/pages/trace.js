// One trace: the summary (missing parents flagged), a waterfall of its spans (service colours, depth,
// durations to scale, errors marked), a span's attributes and events on click, and the trace's logs beside it.

import { get } from "../api.js";
import { clear, errorMark, h, note, serviceColour } from "../dom.js";
import * as fmt from "../format.js";
import * as state from "../state.js";

function summaryList(trace) {
  const s = trace.summary;
  const items = [
    ["Start", s.start_time ? fmt.time(s.start_time, true) : "–"],
    ["Duration", fmt.ms(s.duration_ms)],
    ["Spans", fmt.count(s.span_count)],
    ["Logs", fmt.count(s.log_count)],
    ["Errors", fmt.count(s.error_count)],
  ];
  const list = h("dl", { class: "stats", id: "trace-summary" },
    items.map(([label, value]) => h("div", { dataset: { field: label.toLowerCase() } }, h("dt", {}, label), h("dd", {}, value))));
  const services = h("div", { dataset: { field: "services" } }, h("dt", {}, "Services"));
  const dd = h("dd", {});
  for (const name of s.services) {
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = serviceColour(name, s.services);
    dd.append(h("a", { href: state.href("service", name), class: "svc" }, swatch, name), " ");
  }
  services.append(dd);
  list.append(services);
  return list;
}

function missingNote(trace) {
  const missing = trace.summary.missing_parents;
  if (!missing.length) return null;
  return h("p", { class: "warn", id: "missing-parents", role: "status" }, h("span", { "aria-hidden": "true" }, "⚠ "),
    `${missing.length} span${missing.length > 1 ? "s have a parent" : " has a parent"} that is not in this trace ` +
    "(shown at depth 0, marked “parent missing”).");
}

function kvTable(entries) {
  const table = h("table", { class: "kv" });
  for (const [key, value] of entries) {
    const text = typeof value === "object" && value !== null ? JSON.stringify(value) : String(value ?? "–");
    table.append(h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, text)));
  }
  return table;
}

function spanDetail(span, logs) {
  const events = logs.filter((l) => l.span_id === span.span_id);
  const box = h("section", { class: "card span-detail", id: "span-detail", "aria-live": "polite" },
    h("h2", {}, span.name),
    kvTable([["service", span.service_name], ["environment", span.environment], ["kind", span.kind],
      ["status", span.status], ["error", span.is_error ? "yes" : "no"], ["start", fmt.time(span.start_time, true)],
      ["duration", fmt.ms(span.duration_ms)], ["span id", span.span_id], ["parent span id", span.parent_span_id],
      ["endpoint", span.endpoint],
      ...(span.http ? [["http.method", span.http.method], ["http.route", span.http.route],
        ["http.status_code", span.http.status_code]] : [])]),
    h("h3", {}, "Attributes"));
  const attributes = Object.entries(span.attributes || {});
  box.append(attributes.length ? kvTable(attributes) : h("p", { class: "muted" }, "None."));
  box.append(h("h3", {}, `Events (${events.length} logs of this span)`));
  if (events.length) {
    box.append(h("ol", { class: "events" }, events.map((l) => h("li", {},
      `${fmt.time(l.timestamp, true)} `, h("span", { class: `level level-${l.level}` }, l.level), ` ${l.message}`))));
  } else {
    box.append(h("p", { class: "muted" }, "None."));
  }
  return box;
}

function waterfall(trace, onSelect) {
  const spans = trace.spans;
  if (!spans.length) return h("p", { class: "muted" }, "This trace has logs but no spans (yet).");
  const starts = spans.map((s) => Date.parse(s.start_time));
  const t0 = Math.min(...starts);
  const total = Math.max(...spans.map((s, i) => starts[i] + s.duration_ms)) - t0 || 1;
  const missing = new Set(trace.summary.missing_parents);
  const list = h("ol", { class: "waterfall", id: "waterfall", "aria-label": "Spans, parents before children" });
  const axis = h("li", { class: "wf-axis", "aria-hidden": "true" }, h("span", { class: "wf-label" }, "span"));
  const ticks = h("span", { class: "wf-track" });
  for (const share of [0, 0.25, 0.5, 0.75, 1]) {
    const tick = h("span", { class: "wf-tick" }, fmt.ms(total * share));
    tick.style.left = `${share * 100}%`;
    ticks.append(tick);
  }
  axis.append(ticks, h("span", { class: "wf-duration" }, "duration"));
  list.append(axis);
  spans.forEach((span, i) => {
    const label = h("span", { class: "wf-label" });
    label.style.paddingLeft = `${span.depth * 14 + 4}px`;
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = serviceColour(span.service_name, trace.summary.services);
    label.append(swatch, h("span", { class: "wf-service" }, span.service_name), " ", span.name);
    if (missing.has(span.span_id)) label.append(" ", h("span", { class: "warn-mark" }, "⚠ parent missing"));
    const bar = h("span", { class: `wf-bar${span.is_error ? " wf-error" : ""}` });
    bar.style.left = `${((starts[i] - t0) / total) * 100}%`;
    bar.style.width = `${Math.max(0.3, (span.duration_ms / total) * 100)}%`;
    bar.style.background = span.is_error ? "" : serviceColour(span.service_name, trace.summary.services);
    const track = h("span", { class: "wf-track" }, bar);
    const duration = h("span", { class: "wf-duration" }, fmt.ms(span.duration_ms),
      span.is_error ? " " : "", span.is_error ? errorMark() : "");
    const row = h("li", {}, h("button", { type: "button", class: "wf-row", "aria-pressed": "false",
      dataset: { span: span.span_id, error: String(span.is_error) } }, label, track, duration));
    row.firstChild.addEventListener("click", () => onSelect(span, row.firstChild));
    list.append(row);
  });
  return list;
}

function logList(trace, onSelect) {
  const box = h("section", { class: "card trace-logs", id: "trace-logs" }, h("h2", {}, `Logs (${trace.logs.length})`));
  if (!trace.logs.length) {
    box.append(h("p", { class: "muted" }, "This trace has no logs."));
    return box;
  }
  const list = h("ol", { class: "log-lines" });
  for (const log of trace.logs) {
    const item = h("li", { dataset: { level: log.level } },
      h("span", { class: "muted" }, fmt.time(log.timestamp, true).slice(11)), " ",
      h("span", { class: `level level-${log.level}` }, log.level), " ",
      h("span", { class: "wf-service" }, log.service_name), " ", log.message);
    if (log.span_id) {
      const span = trace.spans.find((s) => s.span_id === log.span_id);
      if (span) item.append(" ", h("button", { type: "button", class: "small link",
        onclick: () => onSelect(span) }, "show span"));
    }
    list.append(item);
  }
  box.append(list);
  return box;
}

/** The logs page for this trace, over the trace's own time give or take an hour. */
function logsHref(trace) {
  const s = trace.summary;
  const hour = 3600000;
  const start = s.start_time ? Date.parse(s.start_time) - hour : Date.now() - 24 * hour;
  const end = s.end_time ? Math.min(Date.now(), Date.parse(s.end_time) + hour) : Date.now();
  return state.href("logs", null, { trace_id: trace.trace_id, start: String(start), end: String(end) });
}

export async function render(ctx) {
  const { main, arg: traceId, signal } = ctx;
  let trace;
  try {
    trace = await get(`/query/traces/${encodeURIComponent(traceId)}`, {}, signal);
  } catch (exc) {
    if (exc.name === "AbortError") return null;
    if (exc.status === 404) {
      main.append(h("h1", {}, "Trace"), note(`No span or log of trace ${traceId} is stored (yet).`, "error"));
      return null;
    }
    if (!exc.status) throw exc;
    main.append(note(`Could not load the trace: ${exc.message}`, "error"));
    return null;
  }
  const detail = h("div", { class: "detail-slot" }, h("p", { class: "muted" }, "Choose a span to see its attributes and events."));
  let pressed = null;
  function select(span, button) {
    const target = button || main.querySelector(`.wf-row[data-span="${CSS.escape(span.span_id)}"]`);
    if (pressed) pressed.setAttribute("aria-pressed", "false");
    if (target) {
      target.setAttribute("aria-pressed", "true");
      pressed = target;
    }
    clear(detail).append(spanDetail(span, trace.logs));
  }
  main.append(h("div", { class: "page-head" }, h("h1", {}, h("span", { class: "muted" }, "Trace "), trace.trace_id),
    h("nav", { class: "links" }, h("a", { href: logsHref(trace) }, "Logs of this trace"))),
  summaryList(trace), missingNote(trace) || "",
  trace.truncated ? note("More than 10 000 spans or logs: the rest is left out.", "warn") : "",
  h("div", { class: "trace-layout" },
    h("section", { class: "card" }, h("h2", {}, "Waterfall"), waterfall(trace, select)),
    h("div", { class: "side" }, detail, logList(trace, select))));
  main.dataset.ready = "true";
  return null;
}
