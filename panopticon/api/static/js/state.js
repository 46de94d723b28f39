// The URL is the state: `#/<page>/<argument>?<parameters>`. Every page is linkable and reloadable.

export const SHARED = ["start", "end", "env", "refresh"]; // carried from page to page by links
export const DEFAULT_START = "1h";

export function parse(hash = location.hash) {
  const text = hash.replace(/^#\/?/, "");
  const [path, query = ""] = text.split("?", 2);
  const [page, ...rest] = path.split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  return { page: page || "services", arg, params: new URLSearchParams(query) };
}

/** `#/<page>/<arg>?...`: the shared parameters of the current URL, then `params` (null removes one). */
export function href(page, arg = null, params = {}) {
  const current = parse().params;
  const next = new URLSearchParams();
  for (const name of SHARED) if (current.get(name)) next.set(name, current.get(name));
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") next.delete(name);
    else next.set(name, value);
  }
  const query = next.toString();
  return `#/${page}${arg !== null ? `/${encodeURIComponent(arg)}` : ""}${query ? `?${query}` : ""}`;
}

/** Change parameters of the current page. `replace`: no new history entry (typing in a search box). */
export function update(params, { replace = false } = {}) {
  const { page, arg } = parse();
  const state = parse().params;
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") state.delete(name);
    else state.set(name, value);
  }
  const query = state.toString();
  const url = `#/${page}${arg !== null ? `/${encodeURIComponent(arg)}` : ""}${query ? `?${query}` : ""}`;
  if (replace) history.replaceState(null, "", url);
  else location.hash = url;
}

/** The range the API is asked for: relative (`1h`) or absolute (epoch ms), as the URL says. */
export function range(params = parse().params) {
  return { start: params.get("start") || DEFAULT_START, end: params.get("end") || undefined };
}
