// uPlot charts of telemetry series, shared by the Telemetry page (sparklines) and a source's page
// (a chart per metric). Data is uPlot's columns: [xs (epoch ms), values (raw value or rollup mean),
// mins, maxs]; raw points have no min/max. uPlot sets sizes through the CSSOM (no style attribute),
// so it runs under the site's CSP; its stylesheet is vendor/uplot/uPlot.min.css.

import uPlot from "../../vendor/uplot/uPlot.esm.js";
import { getJSON } from "../ui.js";

export { uPlot };

const STROKE = "#4f46e5";
const BAND = "rgba(79, 70, 229, 0.14)";
const ANOMALY = "#f04438";

export function formatValue(v, unit = "") {
  if (v == null || Number.isNaN(Number(v))) return "—";
  const n = Number(v);
  const text = Math.abs(n) >= 1000 ? n.toLocaleString(undefined, { maximumFractionDigits: 1 }) : String(Number(n.toPrecision(4)));
  return unit ? `${text} ${unit}` : text;
}

/** Columns from the series API's answer: raw [[ms, v]...] or rollups [[ms, mean, min, max, count]...]. */
export function columnsFrom(series) {
  const points = series?.points || [];
  const xs = [], ys = [], mins = [], maxs = [];
  const rollup = series?.resolution && series.resolution !== "raw";
  for (const p of points) {
    xs.push(p[0]);
    ys.push(p[1]);
    mins.push(rollup ? p[2] : null);
    maxs.push(rollup ? p[3] : null);
  }
  return [xs, ys, mins, maxs];
}

/** Put one reading in its place (time order; the same time replaces: the last value wins). */
export function insertPoint(data, x, y) {
  const xs = data[0];
  const n = xs.length;
  if (!n || x > xs[n - 1]) {
    xs.push(x);
    data[1].push(y);
    data[2].push(null);
    data[3].push(null);
    return;
  }
  let lo = 0, hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (xs[lo] === x) {
    data[1][lo] = y;
    return;
  }
  xs.splice(lo, 0, x);
  data[1].splice(lo, 0, y);
  data[2].splice(lo, 0, null);
  data[3].splice(lo, 0, null);
}

/** Drop the readings before `x` (a window that follows now keeps memory bounded). */
export function trimBefore(data, x) {
  const xs = data[0];
  let i = 0;
  while (i < xs.length && xs[i] < x) i += 1;
  if (i) for (const col of data) col.splice(0, i);
}

/** GET the series API: {ok, series} (series null when it failed). */
export async function fetchSeries(url, { source, metric, start, end, resolution }) {
  const query = new URLSearchParams({ source: String(source), metric, start: new Date(start).toISOString(), end: new Date(end).toISOString() });
  if (resolution) query.set("resolution", resolution);
  try {
    const { ok, body } = await getJSON(`${url}?${query}`);
    return ok && body && Array.isArray(body.points) ? body : null;
  } catch (err) {
    console.warn("could not load", metric, err);
    return null;
  }
}

function elementSize(el, fallbackHeight) {
  const rect = el.getBoundingClientRect();
  return { width: Math.max(120, Math.floor(rect.width) || 480), height: Math.max(24, Math.floor(rect.height) || fallbackHeight) };
}

/** A small chart without axes or cursor: the Telemetry page's last hour of a metric. */
export function sparkline(el, data) {
  const { width, height } = elementSize(el, 36);
  return new uPlot(
    {
      width,
      height,
      ms: 1,
      pxAlign: false,
      cursor: { show: false },
      select: { show: false },
      legend: { show: false },
      scales: { x: { time: true } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: STROKE, width: 1.5, points: { show: false } }, { show: false }, { show: false }],
    },
    data,
    el,
  );
}

/**
 * A source page's chart. `onZoom(min, max)` is called when the user drags across it (the page
 * applies the zoom to every chart); `anomalies()` gives the marks [{x, value}] to draw; `onDraw(u)`
 * runs after each redraw.
 */
export function lineChart(el, data, { label, unit, onZoom, anomalies, onDraw }) {
  const { width } = elementSize(el, 240);
  const chart = new uPlot(
    {
      width,
      height: 240,
      ms: 1,
      cursor: { drag: { x: true, y: false, setScale: false } },
      scales: { x: { time: true } },
      legend: { show: true, live: true },
      axes: [
        { stroke: "#535c6e", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#e5e7eb" } },
        { stroke: "#535c6e", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#e5e7eb" }, size: 56,
          values: (u, splits) => splits.map((v) => formatValue(v)) },
      ],
      series: [
        {},
        { label, stroke: STROKE, width: 1.5, points: { show: false }, value: (u, v) => formatValue(v, unit) },
        { label: "min", stroke: "rgba(79, 70, 229, 0.35)", width: 1, points: { show: false }, value: (u, v) => formatValue(v, unit) },
        { label: "max", stroke: "rgba(79, 70, 229, 0.35)", width: 1, points: { show: false }, value: (u, v) => formatValue(v, unit) },
      ],
      bands: [{ series: [3, 2], fill: BAND }],
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 4) return;
            const min = u.posToVal(u.select.left, "x");
            const max = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            onZoom?.(min, max);
          },
        ],
        // After uPlot's batched commit: the scales and the data are the ones on screen.
        draw: [(u) => drawAnomalies(u, anomalies?.() || []), (u) => onDraw?.(u)],
      },
    },
    data,
    el,
  );
  return chart;
}

function drawAnomalies(u, marks) {
  if (!marks.length) return;
  const { ctx } = u;
  const { left, top, width, height } = u.bbox;
  const [xmin, xmax] = [u.scales.x.min, u.scales.x.max];
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();
  for (const m of marks) {
    if (m.x < xmin || m.x > xmax) continue;
    const x = u.valToPos(m.x, "x", true);
    ctx.fillStyle = "rgba(240, 68, 56, 0.18)";
    ctx.fillRect(x - 2 * devicePixelRatio, top, 4 * devicePixelRatio, height);
    if (m.value != null && Number.isFinite(m.value)) {
      const y = u.valToPos(m.value, "y", true);
      ctx.beginPath();
      ctx.fillStyle = ANOMALY;
      ctx.arc(x, y, 4 * devicePixelRatio, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  ctx.restore();
}
