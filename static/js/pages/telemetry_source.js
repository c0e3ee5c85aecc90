// A telemetry source's page: one live chart per metric (uPlot), a range picker, zoom by drag, the
// anomalies of the range (a server fragment, marked on the charts) and the "Detect anomalies" form.
//
// Live: `telemetry_points` of telemetry.<id> are put in place (in time order, so a replay after a
// reconnect only fills in); the x scale is the page's, never the data's: a range that follows now
// slides, a zoomed or custom range stays. `truncated` events (and resyncs) refetch the visible range.
// Tests read each chart's state from its data-points / data-last-x / data-x-min / data-x-max, or
// from `window.__telemetry`.

import { realtime } from "../realtime.js";
import { fitWidths, publishState } from "../charts.js";
import { postJSON, refreshFragment, setStatusBadge, setText, toast } from "../ui.js";
import { columnsFrom, fetchSeries, formatValue, insertPoint, lineChart, trimBefore } from "./telemetry_charts.js";

const data = JSON.parse(document.getElementById("telemetry-source-data")?.textContent || "{}");
const $ = (id) => document.getElementById(id);
const SLIDE_MS = 5000;

// What the charts show: a preset span ending now (following), or fixed bounds (custom or zoomed).
const view = {
  rangeKey: data.defaultRange,
  span: (data.ranges?.[data.defaultRange] || 3600) * 1000,
  custom: null, // {start, end} of a custom range
  zoom: null, // {min, max} while zoomed
};
const charts = new Map(); // metric name → {metric, el, chart, data, resolution}
let marks = []; // anomalies of the range: {x, value, metric}
let lastSeen = data.lastSeenMs || null;
let newMetricSeen = false;

function following() {
  return !view.custom && !view.zoom;
}

function rangeBounds(now = Date.now()) {
  if (view.custom) return { start: view.custom.start, end: view.custom.end };
  let end = now;
  for (const c of charts.values()) {
    const xs = c.data[0];
    if (xs.length && xs[xs.length - 1] > end) end = xs[xs.length - 1];
  }
  return { start: end - view.span, end };
}

function visibleBounds() {
  return view.zoom ? { start: view.zoom.min, end: view.zoom.max } : rangeBounds();
}

/** What the chart shows, on its element (after uPlot's redraw: its scales are then the ones drawn). */
function publishChartState(c, u) {
  publishState(c.el, u);
  c.el.dataset.resolution = c.resolution;
  const [min, max] = [u.scales.x.min, u.scales.x.max];
  c.el.dataset.marks = String(marks.filter((m) => m.metric === c.metric.name && m.x >= min && m.x <= max).length);
}

/** Redraw every chart over the page's x range, with the data they hold. */
function render() {
  const { start, end } = visibleBounds();
  for (const c of charts.values()) {
    c.chart.setData(c.data, false);
    c.chart.setScale("x", { min: start, max: end });
  }
  const follow = $("tl-follow");
  if (follow) {
    follow.dataset.following = String(following());
    setText(follow, following() ? "Following now" : view.zoom ? "Zoomed: live points are kept, the view stays" : "Fixed range");
  }
  const reset = $("tl-reset-zoom");
  if (reset) reset.hidden = !view.zoom;
}

function setResolution(c, resolution) {
  c.resolution = resolution || "raw";
  const note = c.card.querySelector("[data-resolution]");
  setText(note, c.resolution === "raw" ? "" : `Per ${c.resolution}: mean, with the min–max band.`);
}

/** Load the visible range of every chart from the series API (auto resolution), then redraw. */
let loading = null;
let loadAgain = false;
async function reload() {
  if (loading) {
    loadAgain = true;
    return loading;
  }
  loading = (async () => {
    const { start, end } = visibleBounds();
    await Promise.all(
      [...charts.values()].map(async (c) => {
        const series = await fetchSeries(data.seriesUrl, { source: data.sourceId, metric: c.metric.name, start, end });
        if (!series) return; // keep what the chart has
        c.data = columnsFrom(series);
        setResolution(c, series.resolution);
        if (series.resolution === "raw") {
          // A reading stored while no live event reached this page (before its socket subscribed,
          // or while it was away) is in the refetched range: the latest value follows it.
          const xs = c.data[0];
          if (xs.length) showLatest(c, xs[xs.length - 1], c.data[1][xs.length - 1]);
        }
      }),
    );
    render();
    refreshAnomalies();
  })();
  try {
    await loading;
  } finally {
    loading = null;
    if (loadAgain) {
      loadAgain = false;
      reload();
    }
  }
}

function zoomTo(min, max) {
  if (!(max > min)) return;
  view.zoom = { min, max };
  render();
  reload(); // a finer resolution for the zoomed span
}

function resetZoom() {
  view.zoom = null;
  render();
  reload();
}

function setRange(key) {
  if (!data.ranges?.[key]) return;
  view.rangeKey = key;
  view.span = data.ranges[key] * 1000;
  view.custom = null;
  view.zoom = null;
  for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b.dataset.range === key));
  render();
  reload();
}

function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

function fromInput(value) {
  const t = value ? new Date(value).getTime() : NaN;
  return Number.isNaN(t) ? null : t;
}

// --- charts ---------------------------------------------------------------------------------------

function initCharts() {
  for (const metric of data.metrics || []) {
    const card = document.querySelector(`.tl-chart-card[data-metric-id="${metric.id}"]`);
    const el = card?.querySelector("[data-chart]");
    if (!el) continue;
    const initial = data.initial?.series?.[String(metric.id)];
    const columns = columnsFrom(initial);
    const c = { metric, card, el, data: columns, resolution: "raw", latestX: metric.lastMs ?? null };
    c.chart = lineChart(el, columns, {
      label: metric.name,
      unit: metric.unit,
      onZoom: zoomTo,
      anomalies: () => marks.filter((m) => m.metric === metric.name),
      onDraw: (u) => publishChartState(c, u),
    });
    setResolution(c, initial?.resolution);
    charts.set(metric.name, c);
  }
  window.__telemetry = { charts, view, reload, render };
  render();
}

// --- live -----------------------------------------------------------------------------------------

function onPoints(event) {
  if (event.source_id !== data.sourceId) return;
  lastSeen = Date.now();
  setStatusBadge($("tl-status")?.querySelector(".badge"), "live", "Live");
  const latest = new Map();
  for (const [metric, x, y] of event.points || []) {
    const c = charts.get(metric);
    if (!c) {
      newMetricSeen = true;
      continue;
    }
    insertPoint(c.data, x, y);
    const last = latest.get(metric);
    if (!last || x >= last[0]) latest.set(metric, [x, y]);
  }
  for (const [metric, [x, y]] of latest) showLatest(charts.get(metric), x, y);
  if (following()) {
    const { start } = rangeBounds();
    for (const c of charts.values()) trimBefore(c.data, start - view.span);
  }
  render();
  if (event.truncated) reload();
  if (newMetricSeen) suggestReload();
}

/** The metric's latest value, when `x` is its newest reading yet (a late or replayed older one is not). */
function showLatest(c, x, y) {
  if (c.latestX != null && x < c.latestX) return;
  c.latestX = x;
  setText(c.card.querySelector("[data-latest]"), formatValue(y, c.metric.unit));
}

let suggested = false;
function suggestReload() {
  if (suggested) return;
  suggested = true;
  toast({ kind: "info", title: "New metric", message: `${data.source} reports a metric this page does not chart yet: reload to see it.` });
}

function checkSilent() {
  if (lastSeen && Date.now() - lastSeen > data.silentAfterMs) {
    setStatusBadge($("tl-status")?.querySelector(".badge"), "silent", "Silent");
  }
}

// --- anomalies ------------------------------------------------------------------------------------

let anomaliesBusy = false;
let anomaliesAgain = false;
async function refreshAnomalies() {
  const section = $("anomalies");
  if (!section) return;
  if (anomaliesBusy) {
    anomaliesAgain = true;
    return;
  }
  anomaliesBusy = true;
  try {
    const { start, end } = rangeBounds();
    const url = `${section.dataset.url}?${new URLSearchParams({ start: String(Math.round(start)), end: String(Math.round(end) + 60000) })}`;
    const body = await refreshFragment(url, $("tl-anomaly-rows"));
    if (body) {
      marks = [...body.querySelectorAll("tr[data-anomaly-id]")].map((row) => ({
        x: Number(row.dataset.observed) * 1000,
        value: row.dataset.value === "" ? null : Number(row.dataset.value),
        metric: row.dataset.metric,
      }));
      for (const c of charts.values()) c.chart.redraw(false);
    }
  } catch (err) {
    console.warn("could not refresh the anomalies", err);
  } finally {
    anomaliesBusy = false;
    if (anomaliesAgain) {
      anomaliesAgain = false;
      refreshAnomalies();
    }
  }
}

// --- detection ------------------------------------------------------------------------------------

function initDetect() {
  const form = $("tl-detect-form");
  if (!form) return;
  const baseline = form.querySelector(".tl-detect__baseline");
  const useBaseline = form.elements.use_baseline;
  const sync = () => {
    if (baseline) baseline.hidden = !useBaseline.checked;
  };
  useBaseline.addEventListener("change", sync);
  sync();
  const error = $("tl-detect-error");
  const showError = (text) => {
    error.hidden = !text;
    setText(error, text || "");
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const bounds = visibleBounds();
    const start = fromInput(form.elements.start.value) ?? bounds.start;
    const end = fromInput(form.elements.end.value) ?? bounds.end;
    const body = {
      source: String(data.sourceId),
      metrics: [...form.querySelectorAll('input[name="metrics"]:checked')].map((i) => i.value),
      start: new Date(start).toISOString(),
      end: new Date(end).toISOString(),
      contamination: Number(form.elements.contamination.value),
      use_baseline: useBaseline.checked,
    };
    if (useBaseline.checked) {
      const bs = fromInput(form.elements.baseline_start.value);
      const be = fromInput(form.elements.baseline_end.value);
      if (bs != null) body.baseline_start = new Date(bs).toISOString();
      if (be != null) body.baseline_end = new Date(be).toISOString();
    }
    const button = $("tl-detect-run");
    button.disabled = true;
    try {
      const { ok, status, body: answer } = await postJSON(data.detectUrl, body);
      if (ok) {
        const id = answer?.id != null ? ` #${answer.id}` : "";
        setText($("tl-detect-status"), `Detection${id} queued: flagged readings appear as toasts and in the table.`);
        toast({ kind: "info", title: `Anomaly detection${id} started`, message: `${data.source}: ${body.metrics.join(", ") || "every metric"}.` });
      } else {
        showError(describeError(answer) || `The detection could not be started (HTTP ${status}).`);
      }
    } catch (err) {
      showError(String(err));
    } finally {
      button.disabled = false;
    }
  });
}

function describeError(body) {
  if (!body) return "";
  if (body.detail) return body.detail;
  const errors = body.errors || body;
  return Object.entries(errors)
    .map(([field, msgs]) => `${field}: ${[].concat(msgs).join(" ")}`)
    .join(" · ");
}

// The detection's progress and end arrive as events (the toasts are app.js's); the table follows.
realtime.on("anomaly_detection_progress", (e) => {
  if (e.source_id !== data.sourceId) return;
  setText($("tl-detect-status"), `Detection #${e.detection_id}: ${Math.round(e.progress)}% · ${e.current_step}`);
});
realtime.on("anomaly_detection_completed", (e) => {
  if (e.source_id !== data.sourceId) return;
  const text =
    e.status === "succeeded"
      ? `Detection #${e.detection_id}: ${(e.n_flagged ?? 0).toLocaleString()} of ${(e.n_rows ?? 0).toLocaleString()} readings flagged.`
      : `Detection #${e.detection_id} ${e.status}${e.error ? `: ${e.error}` : "."}`;
  setText($("tl-detect-status"), text);
  refreshAnomalies();
});

// --- wiring ---------------------------------------------------------------------------------------

if (data.sourceId) {
  initCharts();
  initDetect();
  for (const b of document.querySelectorAll("[data-range]")) b.addEventListener("click", () => setRange(b.dataset.range));
  $("tl-reset-zoom")?.addEventListener("click", resetZoom);
  const custom = $("tl-custom");
  if (custom) {
    const { start, end } = rangeBounds();
    custom.elements.start.value = localInput(start);
    custom.elements.end.value = localInput(end);
    custom.addEventListener("submit", (event) => {
      event.preventDefault();
      const s = fromInput(custom.elements.start.value);
      const e = fromInput(custom.elements.end.value);
      if (s == null || e == null || e <= s) {
        toast({ kind: "warning", title: "Custom range", message: "Give a start before the end." });
        return;
      }
      view.custom = { start: s, end: e };
      view.zoom = null;
      for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", "false");
      render();
      reload();
    });
  }
  realtime.on("telemetry_points", onPoints);
  realtime.on("anomaly_detected", (e) => {
    if (e.source === "telemetry" && e.source_id === data.sourceId) refreshAnomalies();
  });
  realtime.onResync(() => reload());
  realtime.subscribe([`telemetry.${data.sourceId}`]);
  window.addEventListener("resize", () => fitWidths(charts.values()));
  setInterval(() => {
    checkSilent();
    if (following()) render();
  }, SLIDE_MS);
  refreshAnomalies();
}
