// Calls to the /query/... API with the session's token; the page's configuration from the shell.

const TOKEN_KEY = "panopticon.token";

export const config = JSON.parse(document.getElementById("panopticon-config").textContent);

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(status, message, parameter) {
    super(message);
    this.status = status;
    this.parameter = parameter;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** GET `path` with the non-empty `params`; the answer's JSON, or AuthError (401) / ApiError. */
export async function get(path, params = {}, signal = undefined) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const response = await fetch(url, { headers, signal, credentials: "omit" });
  if (response.status === 401) throw new AuthError("a valid token is required");
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status, `the API answered ${response.status} without JSON`);
  }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.message || `HTTP ${response.status}`, error.parameter);
  }
  return body;
}

/** `ws(s)://<host>:<WS_PORT><WS_PATH>?<query>` (or DASHBOARD_WS_URL) with the token as `token=`. */
export function wsUrl(params) {
  const base = config.ws_url ||
    `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:${config.ws_port}${config.ws_path}`;
  const url = new URL(base);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const bearer = token();
  if (bearer) url.searchParams.set("token", bearer);
  return url.toString();
}

/** Run `tasks` (functions returning promises) with at most `limit` at once. */
export async function pool(tasks, limit) {
  let next = 0;
  async function worker() {
    while (next < tasks.length) {
      const task = tasks[next++];
      await task();
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}
