// uPlot charts of telemetry series, shared by the Telemetry page (sparklines) and a source's page
// (a chart per metric). Data is uPlot's columns (../charts.js): [xs (epoch ms), values (raw value or
// rollup mean), mins, maxs]; raw points have no min/max.

import { AXIS, elementSize, insertValue, uPlot, zoomOnDrag } from "../charts.js";
import { getJSON } from "../ui.js";

export { trimBefore } from "../charts.js";

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
  insertValue(data, x, 1, y);
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
      axes: [AXIS, { ...AXIS, size: 56, values: (u, splits) => splits.map((v) => formatValue(v)) }],
      series: [
        {},
        { label, stroke: STROKE, width: 1.5, points: { show: false }, value: (u, v) => formatValue(v, unit) },
        { label: "min", stroke: "rgba(79, 70, 229, 0.35)", width: 1, points: { show: false }, value: (u, v) => formatValue(v, unit) },
        { label: "max", stroke: "rgba(79, 70, 229, 0.35)", width: 1, points: { show: false }, value: (u, v) => formatValue(v, unit) },
      ],
      bands: [{ series: [3, 2], fill: BAND }],
      hooks: {
        setSelect: [zoomOnDrag(onZoom)],
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
