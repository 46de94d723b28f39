// Service map: nodes and edges from /query/dependencies, drawn as a layered graph (callers left of their callees),
// calls and error rate on every edge; the same numbers in two tables below for reading and for screen readers.
// The layout is a small longest-path layering written here: service maps are small and mostly acyclic, and a
// vendored layout library would be many times this page.

import { get } from "../api.js";
import { clear, h, note } from "../dom.js";
import * as fmt from "../format.js";
import * as state from "../state.js";

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 190;
const NODE_H = 58;
const GAP_X = 220;
const GAP_Y = 30;
const HOT_ERROR_RATE = 0.05; // an edge at or above it is drawn red (and its label carries ▲ like every edge with errors)
const KIND_LABEL = { service: "service", database: "database", queue: "queue", external: "external API" };
const KIND_GLYPH = { service: "●", database: "◆", queue: "▤", external: "◇" };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

/** {name: {layer, row}}: each node one layer right of its furthest caller (cycles broken where met). */
export function layout(nodes, edges) {
  const callees = new Map(nodes.map((n) => [n.name, []]));
  const callers = new Map(nodes.map((n) => [n.name, 0]));
  for (const e of edges) {
    if (e.caller === e.callee || !callees.has(e.caller) || !callees.has(e.callee)) continue;
    callees.get(e.caller).push(e.callee);
    callers.set(e.callee, callers.get(e.callee) + 1);
  }
  const layer = new Map();
  const visiting = new Set();
  function place(name, depth) {
    if (visiting.has(name) || (layer.get(name) ?? -1) >= depth) return;
    visiting.add(name);
    layer.set(name, depth);
    for (const next of callees.get(name)) place(next, depth + 1);
    visiting.delete(name);
  }
  const names = nodes.map((n) => n.name).sort();
  for (const name of names) if (callers.get(name) === 0) place(name, 0);
  for (const name of names) if (!layer.has(name)) place(name, 0); // nodes only on a cycle
  const rows = new Map();
  const out = {};
  for (const name of [...names].sort((a, b) => layer.get(a) - layer.get(b) || a.localeCompare(b))) {
    const column = layer.get(name);
    const row = rows.get(column) || 0;
    rows.set(column, row + 1);
    out[name] = { layer: column, row };
  }
  return out;
}

function edgeLabel(e) {
  return `${fmt.count(e.calls)} calls · ${e.errors ? "▲ " : ""}${fmt.percent(e.error_rate)} errors`;
}

function drawGraph(answer) {
  const places = layout(answer.nodes, answer.edges);
  const columns = Math.max(1, ...Object.values(places).map((p) => p.layer + 1));
  const rows = Math.max(1, ...Object.values(places).map((p) => p.row + 1));
  const width = columns * NODE_W + (columns - 1) * GAP_X + 40;
  const height = rows * (NODE_H + GAP_Y) + 40;
  const at = (name) => ({ x: 20 + places[name].layer * (NODE_W + GAP_X), y: 20 + places[name].row * (NODE_H + GAP_Y) });
  const most = Math.max(1, ...answer.edges.map((e) => e.calls));
  // Scaled down to the page's width when wider (the viewBox keeps its proportions), never up.
  const graph = svg("svg", { id: "map-graph", role: "img", width: "100%", viewBox: `0 0 ${width} ${height}`,
    "aria-label": `Service map: ${answer.nodes.length} nodes, ${answer.edges.length} edges` });
  graph.style.maxWidth = `${width}px`; // CSSOM, which the page's CSP allows (a style attribute it does not)
  graph.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 10,
    markerHeight: 10, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
  svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#57606a" }))));
  for (const e of answer.edges) {
    if (!places[e.caller] || !places[e.callee]) continue;
    const from = at(e.caller);
    const to = at(e.callee);
    const x1 = from.x + NODE_W;
    const y1 = from.y + NODE_H / 2;
    const forward = places[e.callee].layer > places[e.caller].layer;
    const x2 = forward ? to.x : to.x + NODE_W;
    const y2 = to.y + NODE_H / 2;
    const bend = forward ? (x2 - x1) / 2 : 60;
    const d = forward ? `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`
      : `M ${x1} ${y1} C ${x1 + bend} ${y1 - 40}, ${x2 + bend} ${y2 + 40}, ${x2} ${y2}`;
    const widthPx = 1.5 + 4 * Math.sqrt(e.calls / most);
    const hot = e.error_rate !== null && e.error_rate >= HOT_ERROR_RATE;
    const group = svg("g", { class: `edge${hot ? " hot" : ""}`, "data-caller": e.caller,
      "data-callee": e.callee, "data-calls": e.calls, "data-errors": e.errors });
    group.append(svg("path", { d, fill: "none", stroke: hot ? "#b00020" : "#8c959f", "stroke-width": widthPx,
      "stroke-dasharray": e.callee_kind === "service" ? null : "6 4", "marker-end": "url(#arrow)" }));
    const mx = forward ? (x1 + x2) / 2 : Math.max(x1, x2) + 40;
    const my = (y1 + y2) / 2 - 6;
    group.append(svg("text", { x: mx, y: my, "text-anchor": "middle", class: "edge-label" }, edgeLabel(e)));
    group.append(svg("title", {}, `${e.caller} → ${e.callee}: ${edgeLabel(e)}, p95 ${fmt.ms(e.p95)}`));
    graph.append(group);
  }
  for (const n of answer.nodes) {
    const { x, y } = at(n.name);
    const group = svg("g", { class: `node kind-${n.kind}`, "data-name": n.name, "data-kind": n.kind,
      transform: `translate(${x} ${y})` });
    const hot = n.error_rate !== null && n.error_rate >= HOT_ERROR_RATE;
    group.append(svg("rect", { width: NODE_W, height: NODE_H, rx: n.kind === "service" ? 8 : 22,
      fill: n.kind === "service" ? "#eef4fb" : "#f6f8fa", stroke: hot ? "#b00020" : "#0b5cad",
      "stroke-width": hot ? 2 : 1.2 }));
    const title = `${KIND_GLYPH[n.kind] || "●"} ${n.name}`;
    const label = svg("text", { x: 10, y: 21, class: "node-name" }, title.length > 24 ? `${title.slice(0, 23)}…` : title);
    const link = n.kind === "service" ? svg("a", { href: state.href("service", n.name) }, label) : label;
    group.append(link);
    group.append(svg("text", { x: 10, y: 41, class: "node-figures" },
      `${KIND_LABEL[n.kind] || n.kind} · ${fmt.count(n.requests)} · ${n.errors ? "▲ " : ""}${fmt.percent(n.error_rate)}`));
    group.append(svg("title", {}, `${n.name} (${KIND_LABEL[n.kind] || n.kind}): ${fmt.count(n.requests)} ` +
      `${n.kind === "service" ? "requests" : "calls"}, ${fmt.percent(n.error_rate)} errors, p95 ${fmt.ms(n.p95)}`));
    graph.append(group);
  }
  return graph;
}

function cell(field, value, text) {
  return h("td", { class: "num", dataset: { field, value: value === null || value === undefined ? "" : String(value) } },
    text);
}

function edgeTable(answer) {
  const head = h("tr", {}, ...["Caller", "Callee", "Kind", "Calls", "Errors", "Error rate", "p50", "p95", "p99"]
    .map((label, i) => h("th", { scope: "col", class: i > 2 ? "num" : "" }, label)));
  const body = h("tbody", {});
  for (const e of answer.edges) {
    const errorText = fmt.percent(e.error_rate);
    const rate = cell("error_rate", e.error_rate, e.errors ? `▲ ${errorText}` : errorText);
    body.append(h("tr", { dataset: { caller: e.caller, callee: e.callee } },
      h("td", {}, h("a", { href: state.href("map", null, { service: e.caller }) }, e.caller)),
      h("td", {}, e.callee_kind === "service" ? h("a", { href: state.href("map", null, { service: e.callee }) }, e.callee)
        : e.callee),
      h("td", {}, KIND_LABEL[e.callee_kind] || e.callee_kind),
      cell("calls", e.calls, fmt.count(e.calls)), cell("errors", e.errors, fmt.count(e.errors)), rate,
      cell("p50", e.p50, fmt.ms(e.p50)), cell("p95", e.p95, fmt.ms(e.p95)), cell("p99", e.p99, fmt.ms(e.p99))));
  }
  if (!answer.edges.length) body.append(h("tr", {}, h("td", { colspan: 9 }, "No calls between services in this range.")));
  return h("table", { class: "grid", id: "map-edges" }, h("caption", { class: "sr" }, "Calls between nodes"),
    h("thead", {}, head), body);
}

function sourceNote(answer) {
  const s = answer.sources;
  const parts = [];
  if (s.rollup) parts.push(`edges of ${fmt.time(s.rollup.from)} – ${fmt.time(s.rollup.to)} from rollups (${s.rollup.documents} documents)`);
  if (s.raw.length) parts.push(`${s.raw.length} part${s.raw.length > 1 ? "s" : ""} from raw spans`);
  if (!s.complete) parts.push("the newest minutes may still change");
  return h("p", { class: "sources", id: "map-sources" }, `Sources: ${parts.join("; ") || "none"}.`);
}

export async function render(ctx) {
  const { main, params, signal, range } = ctx;
  const env = params.get("env") || "";
  const centre = params.get("service") || "";
  const head = h("div", { class: "page-head" }, h("h1", {}, centre ? `Service map around ${centre}` : "Service map"));
  if (centre) head.append(h("a", { href: state.href("map", null, { service: null }) }, "Whole map"));
  const summary = h("p", { class: "muted", id: "map-summary" });
  const figure = h("div", { class: "map-figure", id: "map-figure" });
  const legend = h("p", { class: "muted map-legend" },
    "● service (its requests)  ◆ database  ▤ queue  ◇ external API (calls made to it); dashed: calls to something we have ",
    "no spans from; ▲: calls with errors (red line: 5 % or more); line width: calls.");
  const tables = h("div", {});
  main.append(head, summary, legend, figure, tables);

  async function update() {
    const answer = await get("/query/dependencies", { ...range, environment: env, service: centre }, signal);
    clear(figure).append(answer.nodes.length ? drawGraph(answer) : note("No services in this range."));
    clear(tables).append(h("h2", {}, "Calls"), edgeTable(answer), sourceNote(answer));
    summary.textContent = `${answer.nodes.length} nodes, ${answer.edges.length} edges, ${fmt.time(answer.from)} – ` +
      `${fmt.time(answer.to)}${env ? `, environment ${env}` : ", every environment"}.`;
    figure.dataset.from = answer.from;
    figure.dataset.to = answer.to;
    main.dataset.ready = "true";
  }

  try {
    await update();
  } catch (exc) {
    if (exc.name === "AbortError") return null;
    if (exc.status) {
      main.append(note(`Could not load the service map: ${exc.message}`, "error"));
      main.dataset.ready = "true";
      return { update };
    }
    throw exc;
  }
  return { update };
}
