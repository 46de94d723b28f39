// Live errors: the error-log WebSocket with service / environment / level filters and a pause button.
// On reconnect it asks for what it missed with `since=<last cursor>`, so a dropped connection leaves no gap.

import { wsUrl } from "../api.js";
import { h } from "../dom.js";
import * as fmt from "../format.js";
import * as state from "../state.js";

const KEEP = 500; // newest entries kept on the page
const BACKFILL_MS = 15 * 60000; // errors of the last 15 minutes are shown on opening
const RETRY_MS = [1000, 2000, 4000, 8000, 15000];

function entry(message) {
  const log = message.log;
  return h("li", { class: "live-entry", dataset: { id: message.id, level: log.level } },
    h("span", { class: "nowrap muted" }, fmt.time(log.timestamp, true)), " ",
    h("span", { class: `level level-${log.level}` }, h("span", { "aria-hidden": "true" }, "✖ "), log.level), " ",
    h("a", { href: state.href("service", log.service_name), class: "svc" }, log.service_name),
    log.environment ? h("span", { class: "muted" }, ` ${log.environment}`) : "", " ",
    h("span", { class: "message" }, log.message), " ",
    log.trace_id ? h("a", { href: state.href("trace", log.trace_id), dataset: { trace: log.trace_id } }, "trace") : "");
}

export async function render(ctx) {
  const { main, params } = ctx;
  const filters = { service: params.get("service") || "", environment: params.get("env") || "",
    level: params.get("level") || "ERROR" };
  const serviceInput = h("input", { name: "service", value: filters.service, size: 16, placeholder: "all (a,b for several)" });
  const levelSelect = h("select", { name: "level" },
    ["ERROR", "FATAL"].map((l) => h("option", { value: l, selected: l === filters.level }, l === "ERROR" ? "ERROR and FATAL" : "FATAL only")));
  const form = h("form", { class: "filters", id: "live-filters" },
    h("label", {}, "Service ", serviceInput), h("label", {}, "Level ", levelSelect),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.update({ service: serviceInput.value.trim(), level: levelSelect.value === "ERROR" ? null : levelSelect.value });
  });
  const pause = h("button", { type: "button", id: "live-pause", "aria-pressed": "false" }, "Pause");
  const status = h("p", { class: "muted", id: "live-status", role: "status" }, "Connecting…");
  const list = h("ol", { class: "live", id: "live-list", "aria-live": "off" });
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Live errors"), pause), form, status, list);

  let socket = null;
  let cursor = null;
  let attempt = 0;
  let retryTimer = null;
  let stopped = false;
  let paused = false;
  const held = [];
  const seen = new Set();

  function show(messages) {
    for (const message of messages) list.prepend(entry(message));
    while (list.children.length > KEEP) list.lastChild.remove();
    list.dataset.count = String(list.children.length);
  }

  function setStatus(text) {
    status.textContent = paused && held.length ? `${text} Paused: ${held.length} new errors held.` : text;
  }

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.event === "error-log") {
      cursor = message.cursor;
      if (seen.has(message.id)) return;
      seen.add(message.id);
      if (paused) {
        held.push(message);
        setStatus("Connected.");
      } else {
        show([message]);
      }
    } else if (message.event === "caught-up") {
      setStatus(message.error ? `Connected; the missed errors could not be read (${message.error}).` :
        `Connected; caught up (${message.count} missed errors).`);
    } else if (message.event === "dropped") {
      list.prepend(h("li", { class: "warn" }, h("span", { "aria-hidden": "true" }, "⚠ "),
        `${message.count} errors were dropped because this page fell behind.`));
    }
  }

  function connect() {
    const since = cursor || String(Date.now() - BACKFILL_MS);
    socket = new WebSocket(wsUrl({ ...filters, since }));
    socket.addEventListener("open", () => {
      attempt = 0;
      setStatus("Connected.");
      main.dataset.ready = "true";
    });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", () => {
      if (stopped) return;
      const wait = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
      attempt += 1;
      setStatus(`Disconnected; reconnecting in ${wait / 1000} s (missed errors will be filled in).`);
      retryTimer = setTimeout(connect, wait);
    });
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      show(held.splice(0));
      setStatus("Connected.");
    } else {
      setStatus("Connected.");
    }
  });

  connect();
  return {
    destroy() {
      stopped = true;
      clearTimeout(retryTimer);
      if (socket) socket.close();
    },
  };
}
