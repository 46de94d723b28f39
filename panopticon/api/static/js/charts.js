// Time-series charts (uPlot) and sparklines (SVG). Parts of a range read from raw spans are hatched.

import uPlot from "../vendor/uplot-1.6.32/uPlot.esm.js";

const SVG = "http://www.w3.org/2000/svg";

let hatch = null;
function hatchPattern(ctx) {
  if (hatch) return hatch;
  const tile = document.createElement("canvas");
  tile.width = tile.height = 8;
  const t = tile.getContext("2d");
  t.strokeStyle = "rgba(90, 90, 90, 0.35)";
  t.lineWidth = 1;
  t.beginPath();
  t.moveTo(0, 8);
  t.lineTo(8, 0);
  t.stroke();
  hatch = ctx.createPattern(tile, "repeat");
  return hatch;
}

/** Draw `marks` ([{from_ms, to_ms}]) as hatched bands behind the series. */
function bandsPlugin(marks) {
  return {
    hooks: {
      drawClear: [(u) => {
        if (!marks.length) return;
        const { ctx } = u;
        ctx.save();
        ctx.fillStyle = hatchPattern(ctx);
        for (const mark of marks) {
          const left = Math.max(u.bbox.left, u.valToPos(mark.from_ms / 1000, "x", true));
          const right = Math.min(u.bbox.left + u.bbox.width, u.valToPos(mark.to_ms / 1000, "x", true));
          if (right > left) ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
        }
        ctx.restore();
      }],
    },
  };
}

/**
 * A chart in `el`: times in ms, `series` [{label, values, colour, dash, format}], `marks` as hatched bands.
 * Returns the uPlot instance (the page calls `destroy()` when it leaves).
 */
export function timeChart(el, { title, times, series, format, marks = [], height = 220 }) {
  const width = Math.max(320, (el.clientWidth || 600) - 10);
  const opts = {
    title,
    width,
    height,
    plugins: [bandsPlugin(marks)],
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    series: [
      { label: "time" },
      ...series.map((s) => ({
        label: s.label,
        stroke: s.colour,
        width: 1.5,
        dash: s.dash,
        spanGaps: false,
        points: { show: false },
        value: (u, v) => (v === null || v === undefined ? "–" : format(v)),
      })),
    ],
    axes: [
      { stroke: "#333", grid: { stroke: "#e4e4e4" } },
      { stroke: "#333", grid: { stroke: "#e4e4e4" }, size: 70, values: (u, values) => values.map((v) => format(v)) },
    ],
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
  };
  const data = [times.map((t) => t / 1000), ...series.map((s) => s.values)];
  const chart = new uPlot(opts, data, el);
  const resize = new ResizeObserver(() => {
    const w = Math.max(320, el.clientWidth - 10);
    if (Math.abs(w - chart.width) > 4) chart.setSize({ width: w, height });
  });
  resize.observe(el);
  const destroy = chart.destroy.bind(chart);
  chart.destroy = () => { resize.disconnect(); destroy(); };
  return chart;
}

/** A small SVG line of `values` (nulls are gaps) with an accessible label. */
export function sparkline(values, { label, colour = "#0b5cad", width = 90, height = 22 } = {}) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.classList.add("spark");
  const present = values.filter((v) => v !== null && v !== undefined);
  const max = Math.max(...present, 0) || 1;
  const step = values.length > 1 ? width / (values.length - 1) : width;
  let path = "";
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || v === undefined) {
      pen = false;
      return;
    }
    const x = (i * step).toFixed(1);
    const y = (height - 1 - (v / max) * (height - 2)).toFixed(1);
    path += `${pen ? "L" : "M"}${x} ${y} `;
    pen = true;
  });
  const line = document.createElementNS(SVG, "path");
  line.setAttribute("d", path.trim() || `M0 ${height - 1} L${width} ${height - 1}`);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", colour);
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  // A value with no neighbour draws no line: show it as a dot (a range with one busy bucket).
  const missing = (i) => i < 0 || i >= values.length || values[i] === null || values[i] === undefined;
  values.forEach((v, i) => {
    if (missing(i) || !missing(i - 1) || !missing(i + 1)) return;
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", (i * step).toFixed(1));
    dot.setAttribute("cy", (height - 1 - (v / max) * (height - 2)).toFixed(1));
    dot.setAttribute("r", "1.8");
    dot.setAttribute("fill", colour);
    svg.append(dot);
  });
  return svg;
}
