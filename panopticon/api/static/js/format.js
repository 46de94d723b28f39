// Number and time formats shared by every page; the tests read the raw values from data-value.

const counts = new Intl.NumberFormat("en-US");

export function count(n) {
  return n === null || n === undefined ? "–" : counts.format(n);
}

export function perMinute(requests, minutes) {
  if (!minutes) return "–";
  const rate = requests / minutes;
  return rate >= 100 ? counts.format(Math.round(rate)) : rate.toFixed(rate >= 10 ? 1 : 2);
}

export function percent(rate) {
  return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(2)}%`;
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 10000) return `${(value / 1000).toFixed(1)} s`;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 100) return `${value.toFixed(0)} ms`;
  if (value >= 10) return `${value.toFixed(1)} ms`;
  return `${value.toFixed(2)} ms`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** Local time, to the second (with milliseconds when asked). */
export function time(iso, withMs = false) {
  const d = new Date(iso);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${day} ${clock}.${pad(d.getMilliseconds(), 3)}` : `${day} ${clock}`;
}

/** The value for an <input type="datetime-local"> (local time, minutes). */
export function localInput(msValue) {
  const d = new Date(msValue);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function minutesBetween(fromIso, toIso) {
  return (Date.parse(toIso) - Date.parse(fromIso)) / 60000;
}
