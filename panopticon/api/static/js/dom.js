// A tiny element builder: h("a", {href: "#/x", class: "y"}, "text", child). Text is always text (no HTML).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** A short message in place of content: "no data", an error, ... (role=status so it is announced). */
export function note(text, kind = "") {
  return h("p", { class: `note ${kind}`.trim(), role: kind === "error" ? "alert" : "status" }, text);
}

/** The error mark used everywhere: a glyph and the word, so an error is never told by colour alone. */
export function errorMark(label = "error") {
  return h("span", { class: "err-mark" }, h("span", { "aria-hidden": "true" }, "✖ "), label);
}

const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7B4FA0", "#4D4D4D",
  "#A6761D", "#1B9E77"];

/**
 * A colour per service (Okabe–Ito first: distinguishable with colour-vision deficiency): by its place in
 * `names` (the services of one trace, so up to ten get distinct colours), else by a hash of the name.
 */
export function serviceColour(name, names = null) {
  const place = names ? names.indexOf(name) : -1;
  if (place >= 0) return PALETTE[place % PALETTE.length];
  let hash = 2166136261; // FNV-1a
  for (const ch of name) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619) >>> 0;
  return PALETTE[hash % PALETTE.length];
}
