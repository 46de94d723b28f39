// The shell: routing, the shared time range / environment / refresh controls, and signing in.

import { AuthError, config, get, setToken, token } from "./api.js";
import { clear, h, note } from "./dom.js";
import { localInput } from "./format.js";
import * as state from "./state.js";
import * as services from "./pages/services.js";
import * as service from "./pages/service.js";
import * as trace from "./pages/trace.js";
import * as logs from "./pages/logs.js";
import * as live from "./pages/live.js";
import * as map from "./pages/map.js";

// Page name in the URL -> module with `render(ctx)` (and a link in index.html's nav).
const PAGES = { services, service, trace, logs, live, map };
const PRESETS = ["15m", "1h", "6h", "24h", "7d"];
const REFRESH_MS = { "10s": 10000, "30s": 30000, "1m": 60000, "5m": 300000 };

const main = document.getElementById("main");
let current = null; // { page, controller, handle }
let refreshTimer = null;

function showLogin(message = "") {
  document.getElementById("login").hidden = false;
  const error = document.getElementById("login-error");
  error.hidden = !message;
  error.textContent = message;
  document.getElementById("login-token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const field = document.getElementById("login-token");
  setToken(field.value.trim());
  try {
    await get("/query/services", { start: "15m", limit: 1 });
  } catch (exc) {
    setToken(null);
    showLogin(exc instanceof AuthError ? "That token was refused." : `The API did not answer: ${exc.message}`);
    return;
  }
  field.value = "";
  document.getElementById("login").hidden = true;
  document.getElementById("logout").hidden = false;
  route();
}

function signOut() {
  setToken(null);
  stopPage();
  clear(main);
  document.getElementById("logout").hidden = true;
  showLogin();
}

/** Errors a page did not handle itself: a refused token sends the user to sign in; others are shown. */
export function failed(exc) {
  if (exc && exc.name === "AbortError") return;
  if (exc instanceof AuthError) {
    setToken(null);
    showLogin(config.auth ? "Your token was refused or has expired; sign in again." : "");
    return;
  }
  main.append(note(`Could not load: ${exc.message}`, "error"));
}

function stopPage() {
  if (!current) return;
  current.controller.abort();
  if (current.handle && current.handle.destroy) current.handle.destroy();
  current = null;
}

function syncControls(params) {
  const start = params.get("start") || state.DEFAULT_START;
  const absolute = params.get("end") || !PRESETS.includes(start);
  const select = document.getElementById("range");
  select.value = absolute ? "custom" : start;
  document.getElementById("custom-range").hidden = !absolute;
  if (absolute) {
    const startMs = /^\d+$/.test(start) ? Number(start) : Date.parse(start);
    const endRaw = params.get("end");
    const endMs = !endRaw ? Date.now() : /^\d+$/.test(endRaw) ? Number(endRaw) : Date.parse(endRaw);
    if (!Number.isNaN(startMs)) document.getElementById("range-from").value = localInput(startMs);
    if (!Number.isNaN(endMs)) document.getElementById("range-to").value = localInput(endMs);
  }
  document.getElementById("env").value = params.get("env") || "";
  document.getElementById("refresh").value = params.get("refresh") || "";
  for (const link of document.querySelectorAll("#nav a")) {
    const on = link.dataset.page === state.parse().page ||
      (link.dataset.page === "services" && ["service", "trace"].includes(state.parse().page));
    if (on) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
    const page = link.dataset.page;
    link.href = state.href(page);
  }
}

function scheduleRefresh(params) {
  clearInterval(refreshTimer);
  const every = REFRESH_MS[params.get("refresh") || ""];
  if (!every) return;
  refreshTimer = setInterval(() => {
    if (document.hidden || !current || !current.handle || !current.handle.update) return;
    current.handle.update().catch(failed);
  }, every);
}

export async function route() {
  const { page, arg, params } = state.parse();
  syncControls(params);
  if (config.auth && !token()) {
    showLogin();
    return;
  }
  const module = PAGES[page];
  stopPage();
  delete main.dataset.ready; // each page sets it again once it shows its data (the browser tests wait for it)
  scheduleRefresh(params);
  clear(main);
  if (!module) {
    main.append(note(`No page "${page}".`, "error"), h("p", {}, h("a", { href: state.href("services") }, "Services")));
    return;
  }
  const controller = new AbortController();
  current = { page, controller, handle: null };
  const ctx = { main, arg, params, signal: controller.signal, range: state.range(params), failed };
  try {
    const handle = await module.render(ctx);
    if (current && current.controller === controller) current.handle = handle || null;
    else if (handle && handle.destroy) handle.destroy();
  } catch (exc) {
    failed(exc);
  }
}

function applyCustomRange() {
  const from = Date.parse(document.getElementById("range-from").value);
  const to = Date.parse(document.getElementById("range-to").value);
  if (Number.isNaN(from) || Number.isNaN(to) || from >= to) {
    main.prepend(note("Choose a start before the end.", "error"));
    return;
  }
  state.update({ start: String(from), end: String(to) });
}

function wireControls() {
  document.getElementById("range").addEventListener("change", (event) => {
    const value = event.target.value;
    if (value === "custom") {
      document.getElementById("custom-range").hidden = false;
      const now = Date.now();
      document.getElementById("range-from").value = localInput(now - 3600000);
      document.getElementById("range-to").value = localInput(now);
      return;
    }
    state.update({ start: value, end: null });
  });
  document.getElementById("range-apply").addEventListener("click", applyCustomRange);
  document.getElementById("env").addEventListener("change", (event) => state.update({ env: event.target.value.trim() }));
  document.getElementById("refresh").addEventListener("change", (event) => state.update({ refresh: event.target.value }));
  document.getElementById("reload").addEventListener("click", () => {
    if (current && current.handle && current.handle.update) current.handle.update().catch(failed);
    else route();
  });
  document.getElementById("logout").addEventListener("click", signOut);
  document.getElementById("login-form").addEventListener("submit", signIn);
  window.addEventListener("hashchange", route);
}

wireControls();
document.getElementById("logout").hidden = !(config.auth && token());
route();
