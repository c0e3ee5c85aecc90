// The Monitoring page: live charts (the last hour from the API, then chart_data), the alerts table
// (system_alert, with acknowledge / resolve through the API), anomalies (anomaly_detected) and the
// health badge (health_change). Chart.js is the vendored UMD build (window.Chart).

import { realtime } from "../realtime.js";
import { initSilences } from "./silences.js";
import { formatBytes, formatTime, getJSON, liveFragments, postJSON, refreshRelativeTimes, setStatusBadge, setText, toast } from "../ui.js";

const data = JSON.parse(document.getElementById("monitoring-data")?.textContent || "{}");
const WINDOW_MS = (data.minutes || 60) * 60 * 1000;
const MAX_ANOMALIES = 50;
const PALETTE = ["#4f46e5", "#12b76a", "#f79009", "#2e90fa", "#f04438", "#7a5af8", "#15b79e", "#667085"];
const $ = (id) => document.getElementById(id);

// --- formatting -----------------------------------------------------------------------------------------

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

const charts = {};
const hostColors = new Map();

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
  const canvas = $(`chart-${name}`);
  if (!canvas || !window.Chart) return null;
  return new window.Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 2, tension: 0.25 } },
      plugins: {
        legend: { display: true, position: "bottom", labels: { boxWidth: 10, boxHeight: 10, font: { size: 11 } } },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? formatTime(new Date(items[0].parsed.x)) : ""),
            label: (item) => `${item.dataset.label}: ${formatValue(spec, item.parsed.y)}`,
          },
        },
      },
      scales: {
        x: { type: "linear", ticks: { maxTicksLimit: 6, callback: (v) => formatTime(new Date(v)).slice(0, 5), font: { size: 11 } }, grid: { display: false } },
        y: { beginAtZero: true, suggestedMax: spec.max, ticks: { maxTicksLimit: 5, font: { size: 11 }, callback: (v) => formatValue(spec, v) } },
      },
    },
  });
}

function dataset(chart, key, label) {
  let ds = chart.data.datasets.find((d) => d.key === key);
  if (!ds) {
    const color = colorFor(key.split("|")[0]);
    const dashed = key.endsWith("|recv_rate") || key.endsWith("|ws_ms");
    ds = { key, label, data: [], borderColor: color, backgroundColor: color, borderDash: dashed ? [5, 4] : [], spanGaps: true };
    chart.data.datasets.push(ds);
  }
  return ds;
}

function push(ds, t, y) {
  if (y == null) return;
  const last = ds.data[ds.data.length - 1];
  if (last && t < last.x) {
    const i = ds.data.findIndex((p) => p.x > t);
    ds.data.splice(i < 0 ? ds.data.length : i, 0, { x: t, y });
  } else if (!last || t > last.x) {
    ds.data.push({ x: t, y });
  }
}

function trim(chart, now) {
  const cutoff = now - WINDOW_MS;
  for (const ds of chart.data.datasets) {
    let drop = 0;
    while (drop < ds.data.length && ds.data[drop].x < cutoff) drop += 1;
    if (drop) ds.data.splice(0, drop);
  }
  chart.options.scales.x.min = cutoff;
  chart.options.scales.x.max = now;
}

function latestLabel(name) {
  const spec = CHARTS[name];
  const chart = charts[name];
  const el = document.querySelector(`[data-chart="${name}"] [data-latest]`);
  if (!chart || !el) return;
  const parts = chart.data.datasets
    .filter((ds) => ds.data.length)
    .slice(0, 2)
    .map((ds) => formatValue(spec, ds.data[ds.data.length - 1].y));
  setText(el, parts.join(" · ") || "—");
}

/** Add one point (a chart_data event, or a row of the history) to every chart it feeds. */
export function addPoint(part, point) {
  for (const [name, spec] of Object.entries(CHARTS)) {
    const chart = charts[name];
    if (!chart || spec.part !== part) continue;
    for (const [field, , suffix] of spec.perHost || []) {
      push(dataset(chart, `${point.host}|${field}`, `${point.host}${suffix}`), point.t, point[field]);
    }
    for (const [field, , label] of spec.system || []) {
      push(dataset(chart, `system|${field}`, label), point.t, point[field]);
    }
  }
}

function redraw() {
  const now = Date.now();
  for (const [name, chart] of Object.entries(charts)) {
    trim(chart, now);
    chart.update("none");
    latestLabel(name);
  }
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

function initCharts() {
  if (!window.Chart) {
    console.error("Chart.js is not loaded");
    return;
  }
  for (const [name, spec] of Object.entries(CHARTS)) charts[name] = makeChart(name, spec);
  const pending = [];
  let loaded = false;
  realtime.on("chart_data", (e) => {
    if (!loaded) {
      pending.push(e);
      return;
    }
    for (const part of ["resource", "network", "performance"]) if (e[part]) addPoint(part, e[part]);
    redraw();
  });
  loadHistory()
    .catch((err) => console.warn("chart history unavailable", err))
    .finally(() => {
      loaded = true;
      for (const e of pending) for (const part of ["resource", "network", "performance"]) if (e[part]) addPoint(part, e[part]);
      redraw();
    });
  realtime.on("project_metrics", (e) => {
    if (data.projectId == null || e.project_id !== data.projectId) return;
    addPoint("project", { t: Date.now(), predictions_per_minute: e.predictions_per_minute });
    if (loaded) redraw();
  });
  setInterval(redraw, 15000); // slide the window even when nothing arrives
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
