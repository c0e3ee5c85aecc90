// The Monitoring page: live charts (uPlot: the last hour from the API, then chart_data), the alerts
// table (system_alert, with acknowledge / resolve through the API), anomalies (anomaly_detected) and
// the health badge (health_change).
//
// Charts: a sample is put in place in its chart's columns (time order, so a replay after a
// reconnect only fills in); the charts redraw at most every RENDER_MS, one a frame. The x range is
// the page's: the last hour ending now (it slides), or the span the user dragged across a chart
// (every chart zooms; live samples are kept, the view stays) until "Reset zoom". Tests read each
// chart's data-points / data-last-x / data-x-min / data-x-max (../charts.js publishState).

import { atMostEvery, AXIS, elementSize, fitWidths, insertValue, lastValue, publishState, trimBefore, uPlot, zoomOnDrag } from "../charts.js";
import { realtime } from "../realtime.js";
import { initSilences } from "./silences.js";
import { formatBytes, formatTime, getJSON, liveFragments, postJSON, refreshRelativeTimes, setStatusBadge, setText, toast } from "../ui.js";

const data = JSON.parse(document.getElementById("monitoring-data")?.textContent || "{}");
const WINDOW_MS = (data.minutes || 60) * 60 * 1000;
const CHART_HEIGHT = 170;
const RENDER_MS = 1000; // samples come every few seconds: redrawing more often only costs frames
const MAX_ANOMALIES = 50;
const PALETTE = ["#4f46e5", "#12b76a", "#f79009", "#2e90fa", "#f04438", "#7a5af8", "#15b79e", "#667085"];
const $ = (id) => document.getElementById(id);

// --- charts -----------------------------------------------------------------------------------------------

// Each chart: which chart_data part feeds it, and its series: per host, or one for the whole system.
const CHARTS = {
  cpu: { part: "resource", perHost: [["cpu", "cpu_percent", ""]], unit: "%", max: 100 },
  memory: { part: "resource", perHost: [["memory", "memory_percent", ""]], unit: "%", max: 100 },
  disk: { part: "resource", perHost: [["disk", "disk_percent", ""]], unit: "%", max: 100 },
  network: { part: "network", perHost: [["sent_rate", "net_sent_rate", " ↑"], ["recv_rate", "net_recv_rate", " ↓"]], unit: "B/s" },
  latency: { part: "performance", system: [["api_ms", "api_response_time_ms", "API p95"], ["ws_ms", "ws_response_time_ms", "Socket p95"]], unit: "ms" },
  // The current project's (project_metrics), not a host's: it starts empty and moves live.
  predictions: { part: "project", system: [["predictions_per_minute", "predictions_per_minute", "Predictions / min"]], unit: "/min" },
};

const charts = {}; // name → {spec, el, chart, data: uPlot's columns, keys: the series' keys in column order}
const hostColors = new Map();
let zoom = null; // {min, max} while zoomed

function colorFor(key) {
  if (!hostColors.has(key)) hostColors.set(key, PALETTE[hostColors.size % PALETTE.length]);
  return hostColors.get(key);
}

function formatValue(spec, v) {
  if (v == null) return "—";
  if (spec.unit === "B/s") return formatBytes(v, { perSecond: true });
  if (spec.unit === "%") return `${Number(v).toFixed(1)}%`;
  if (spec.unit === "ms") return `${Math.round(v)} ms`;
  return `${Number(v).toLocaleString(undefined, { maximumFractionDigits: 1 })}${spec.unit === "/min" ? "" : spec.unit}`;
}

function makeChart(name, spec) {
  const el = $(`chart-${name}`);
  if (!el) return null;
  const c = { spec, el, data: [[]], keys: [] };
  c.chart = new uPlot(
    {
      width: elementSize(el, CHART_HEIGHT).width,
      height: CHART_HEIGHT,
      ms: 1,
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { show: true, live: true },
      scales: {
        x: { time: true },
        // From zero, to the unit's ceiling (100 %) or a little above the highest value.
        y: { range: (u, min, max) => [0, spec.max ?? (max > 0 ? uPlot.rangeNum(0, max, 0.1, true)[1] : 1)] },
      },
      axes: [AXIS, { ...AXIS, size: 76, values: (u, splits) => splits.map((v) => formatValue(spec, v)) }],
      series: [{ label: "Time", value: (u, v) => (v == null ? "—" : formatTime(new Date(v))) }],
      hooks: { setSelect: [zoomOnDrag(zoomTo)], draw: [(u) => publishState(el, u)] },
    },
    c.data,
    el,
  );
  return c;
}

/** The column of a series, added (with its legend entry) the first time it has a value. */
function column(c, key, label) {
  const i = c.keys.indexOf(key);
  if (i >= 0) return i + 1;
  const dashed = key.endsWith("|recv_rate") || key.endsWith("|ws_ms");
  c.keys.push(key);
  c.data.push(new Array(c.data[0].length).fill(null));
  c.chart.addSeries({
    label,
    stroke: colorFor(key.split("|")[0]),
    width: 2,
    dash: dashed ? [5, 4] : undefined,
    spanGaps: true,
    points: { show: false },
    value: (u, v) => formatValue(c.spec, v),
  });
  return c.keys.length;
}

function put(c, key, label, t, y) {
  if (y == null) return;
  insertValue(c.data, t, column(c, key, label), y);
}

/** Add one point (a chart_data event, or a row of the history) to every chart it feeds. */
export function addPoint(part, point) {
  for (const c of Object.values(charts)) {
    if (c.spec.part !== part) continue;
    for (const [field, , suffix] of c.spec.perHost || []) put(c, `${point.host}|${field}`, `${point.host}${suffix}`, point.t, point[field]);
    for (const [field, , label] of c.spec.system || []) put(c, `system|${field}`, label, point.t, point[field]);
  }
}

function latestLabel(name, c) {
  const el = document.querySelector(`[data-chart="${name}"] [data-latest]`);
  if (!el) return;
  const parts = c.keys
    .map((key, i) => lastValue(c.data, i + 1))
    .filter((v) => v != null)
    .slice(0, 2)
    .map((v) => formatValue(c.spec, v));
  setText(el, parts.join(" · ") || "—");
}

/** Redraw every chart over the page's x range with the data it holds (uPlot redraws, nothing is
 * rebuilt), a chart a frame: each frame repaints one canvas, not six. */
function render() {
  const now = Date.now();
  const { min, max } = zoom || { min: now - WINDOW_MS, max: now };
  const queue = Object.entries(charts);
  const next = () => {
    const [name, c] = queue.shift();
    if (!zoom) trimBefore(c.data, min);
    c.chart.setData(c.data, false);
    c.chart.setScale("x", { min, max });
    latestLabel(name, c);
    if (queue.length) requestAnimationFrame(next);
    else showView();
  };
  next();
}

function showView() {
  $("mon-reset-zoom").hidden = !zoom;
  const follow = $("mon-follow");
  follow.dataset.following = String(!zoom);
  setText(follow, zoom ? "Zoomed: live samples are kept, the view stays" : "Last hour, following now");
}

const scheduleRender = atMostEvery(RENDER_MS, render);

function zoomTo(min, max) {
  if (!(max > min)) return;
  zoom = { min, max };
  render();
}

async function loadHistory() {
  const url = new URL(data.api.metrics, location.origin);
  url.searchParams.set("minutes", String(data.minutes || 60));
  const { ok, status, body } = await getJSON(url);
  if (!ok) throw new Error(`HTTP ${status}`);
  for (const [host, series] of Object.entries(body.hosts || {})) {
    series.t.forEach((t, i) => {
      const row = (field) => series[field]?.[i] ?? null;
      addPoint("resource", { host, t, cpu: row("cpu_percent"), memory: row("memory_percent"), disk: row("disk_percent") });
      addPoint("network", { host, t, sent_rate: row("net_sent_rate"), recv_rate: row("net_recv_rate") });
      addPoint("performance", { host, t, api_ms: row("api_response_time_ms"), ws_ms: row("ws_response_time_ms") });
    });
  }
}

function addChartData(e) {
  for (const part of ["resource", "network", "performance"]) if (e[part]) addPoint(part, e[part]);
}

function initCharts() {
  for (const [name, spec] of Object.entries(CHARTS)) {
    const c = makeChart(name, spec);
    if (c) charts[name] = c;
  }
  const pending = [];
  let loaded = false;
  realtime.on("chart_data", (e) => {
    if (!loaded) {
      pending.push(e);
      return;
    }
    addChartData(e);
    scheduleRender();
  });
  loadHistory()
    .catch((err) => console.warn("chart history unavailable", err))
    .finally(() => {
      loaded = true;
      for (const e of pending) addChartData(e);
      render();
    });
  realtime.on("project_metrics", (e) => {
    if (data.projectId == null || e.project_id !== data.projectId) return;
    addPoint("project", { t: Date.now(), predictions_per_minute: e.predictions_per_minute });
    if (loaded) scheduleRender();
  });
  $("mon-reset-zoom").addEventListener("click", () => {
    zoom = null;
    render();
  });
  window.addEventListener("resize", () => fitWidths(Object.values(charts)));
  setInterval(scheduleRender, 15000); // slide the window even when nothing arrives
}

// --- health -------------------------------------------------------------------------------------------------

realtime.on("health_change", (e) => {
  const wrap = $("mon-health");
  if (!wrap) return;
  wrap.dataset.level = e.current_health;
  wrap.title = e.reason || "";
  setStatusBadge(wrap.querySelector(".badge"), e.current_health, `Health: ${e.current_health}`);
});

// --- alerts and anomalies: rows rendered by the server (monitoring:alert-row, monitoring:anomaly-row) ----------

function updateOpenCount() {
  const n = document.querySelectorAll('#alert-rows tr:not([data-status="resolved"])').length;
  setText($("alerts-open-count"), String(n));
  $("alerts-empty").hidden = document.querySelectorAll("#alert-rows tr").length > 0;
}

const fragmentUrl = (template, id) => template.replace(/\/0\/row\/$/, `/${id}/row/`);

const alertRows = liveFragments({
  url: (id) => fragmentUrl(data.alertRowUrl, id),
  find: (id) => $("alert-rows").querySelector(`tr[data-alert-id="${id}"]`),
  place: (row) => $("alert-rows").prepend(row),
  onUpdate: updateOpenCount,
});

// The socket hears every project of the user: the page keeps its current project's and the global ones.
const ours = (e) => e.project_id == null || e.project_id === data.projectId;

realtime.on("system_alert", (e) => {
  if (!ours(e)) return;
  if (e.alert && e.alert.id != null) alertRows.refresh(e.alert.id);
});

$("alert-rows")?.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || !["acknowledge", "resolve"].includes(button.dataset.action)) return; // silence, snooze: silences.js
  const id = button.closest("tr").dataset.alertId;
  const action = button.dataset.action;
  const url = data.api[action].replace(/\/0\/(acknowledge|resolve)\/$/, `/${id}/$1/`);
  button.disabled = true;
  try {
    const { ok, status, body } = await postJSON(url, action === "resolve" ? { note: "" } : undefined);
    if (ok) alertRows.refresh(id);
    else toast({ kind: status === 409 ? "warning" : "error", title: `Could not ${action}`, message: body?.detail || `HTTP ${status}` });
  } catch (err) {
    toast({ kind: "error", title: `Could not ${action}`, message: String(err) });
  } finally {
    button.disabled = false;
  }
});

const anomalyRows = liveFragments({
  url: (id) => fragmentUrl(data.anomalyRowUrl, id),
  find: (id) => $("anomaly-rows").querySelector(`tr[data-anomaly-id="${id}"]`),
  place: (row) => {
    const body = $("anomaly-rows");
    body.prepend(row);
    while (body.children.length > MAX_ANOMALIES) body.lastElementChild.remove();
    $("anomalies-empty").hidden = true;
  },
});

realtime.on("anomaly_detected", (e) => {
  if (!ours(e)) return;
  if (e.anomaly_id != null) anomalyRows.refresh(e.anomaly_id);
});

// --- rule form: show the metric fields for metric rules only ------------------------------------------------

function syncRuleForm() {
  const kind = document.getElementById("id_kind");
  if (!kind) return;
  const metricOnly = ["id_metric", "id_comparison"];
  for (const id of metricOnly) {
    const field = document.getElementById(id)?.closest(".field");
    if (field) field.hidden = kind.value !== "metric";
  }
}
document.getElementById("id_kind")?.addEventListener("change", syncRuleForm);
syncRuleForm();

initSilences({ data, alertRows });
initCharts();
refreshRelativeTimes();
setInterval(refreshRelativeTimes, 15000);
