// The Telemetry page: a card per source of the current project (templates/telemetry/includes/
// source_card.html) with its status, last values and a sparkline per metric (uPlot, the last hour
// from the series API). Live: the page watches the project (`telemetry_project.<id>`, see
// telemetry/live.py), so every source of the project sends its `telemetry_points` to the project's
// topic meanwhile; they extend the sparklines and re-render the source's card (coalesced). A source
// or a metric seen for the first time gets its card or sparkline; a timer re-renders the cards so
// "silent" shows without an event.

import { realtime } from "../realtime.js";
import { liveFragments, refreshRelativeTimes, setText } from "../ui.js";
import { columnsFrom, fetchSeries, insertPoint, sparkline, trimBefore } from "./telemetry_charts.js";

const data = JSON.parse(document.getElementById("telemetry-data")?.textContent || "{}");
const WINDOW_MS = (data.sparklineSeconds || 3600) * 1000;
const CARD_REFRESH_MS = 2000; // at most one card render per source this often while points arrive
const STATUS_REFRESH_MS = 30000;

const sparks = new Map(); // metric id → {chart, data}, or null while its last hour loads
const pending = new Map(); // source id → timer of its coalesced card refresh
const $ = (id) => document.getElementById(id);

const cards = liveFragments({
  url: (id) => data.cardUrl.replace(/\/0\/card\/$/, `/${id}/card/`),
  find: (id) => $(`tl-source-${id}`),
  place: (el) => $("tl-sources")?.append(el),
  onUpdate: (el) => {
    attach(el);
    updateSummary();
  },
});

function sourceIds() {
  return new Set([...document.querySelectorAll(".tl-card[data-source-id]")].map((el) => Number(el.dataset.sourceId)));
}

/** Each metric row of a card gets its sparkline: the existing chart put back into its holder after a
 * morph (the server renders the holder empty), or a new one loaded for a metric seen first. */
function attach(card) {
  const sourceId = Number(card.dataset.sourceId);
  for (const row of card.querySelectorAll("tr[data-metric-id]")) {
    const id = Number(row.dataset.metricId);
    const holder = row.querySelector("[data-spark]");
    if (!holder) continue;
    const spark = sparks.get(id);
    if (spark === undefined) initSparkline(sourceId, row.dataset.metric, id, holder);
    else if (spark && spark.chart.root.parentElement !== holder) {
      holder.append(spark.chart.root);
      holder.dataset.points = String(spark.data[0].length);
    }
  }
}

function updateSummary() {
  setText(document.querySelector("[data-live-count]"), String(document.querySelectorAll('.tl-card[data-status="live"]').length));
}

async function initSparkline(sourceId, name, id, holder) {
  sparks.set(id, null);
  const end = Date.now();
  const series = await fetchSeries(data.seriesUrl, { source: sourceId, metric: name, start: end - WINDOW_MS, end });
  const columns = columnsFrom(series);
  for (const p of early.get(id) || []) insertPoint(columns, p[0], p[1]);
  early.delete(id);
  const current = document.querySelector(`[data-spark="${id}"]`) || holder;
  sparks.set(id, { chart: sparkline(current, columns), data: columns, sourceId, name });
  draw(id);
}

// Points that arrive while a sparkline's last hour loads.
const early = new Map();

function draw(metricId) {
  const spark = sparks.get(metricId);
  if (!spark) return;
  const end = Math.max(Date.now(), spark.data[0].at(-1) || 0);
  trimBefore(spark.data, end - WINDOW_MS);
  spark.chart.setData(spark.data, false);
  spark.chart.setScale("x", { min: end - WINDOW_MS, max: end });
  const holder = spark.chart.root.parentElement;
  if (holder) holder.dataset.points = String(spark.data[0].length);
}

function metricId(sourceId, name) {
  const row = document.querySelector(`#tl-source-${sourceId} tr[data-metric="${CSS.escape(name)}"]`);
  return row ? Number(row.dataset.metricId) : null;
}

function onPoints(event) {
  if (!$(`tl-source-${event.source_id}`) && !$("tl-sources")) {
    location.reload(); // the first source of an empty project: the page's layout changes
    return;
  }
  const touched = new Set();
  let unknown = false;
  for (const [metric, x, y] of event.points || []) {
    const id = metricId(event.source_id, metric);
    if (id == null) {
      unknown = true;
      continue;
    }
    const spark = sparks.get(id);
    if (spark) {
      insertPoint(spark.data, x, y);
      touched.add(id);
    } else {
      if (!early.has(id)) early.set(id, []);
      early.get(id).push([x, y]);
    }
  }
  for (const id of touched) draw(id);
  if (unknown) cards.refresh(event.source_id); // a new source or metric: its card (and sparkline) now
  else scheduleCard(event.source_id);
}

function scheduleCard(sourceId) {
  if (pending.has(sourceId)) return;
  pending.set(
    sourceId,
    setTimeout(() => {
      pending.delete(sourceId);
      cards.refresh(sourceId);
    }, CARD_REFRESH_MS),
  );
}

if (data.projectId) {
  for (const card of document.querySelectorAll(".tl-card[data-source-id]")) attach(card);
  realtime.on("telemetry_points", (e) => {
    if (e.project_id === data.projectId || sourceIds().has(e.source_id)) onPoints(e);
  });
  realtime.subscribe([`telemetry_project.${data.projectId}`]);
  realtime.onResync(() => location.reload());
  setInterval(() => {
    for (const id of sourceIds()) cards.refresh(id);
    for (const id of sparks.keys()) draw(id);
  }, STATUS_REFRESH_MS);
  setInterval(() => refreshRelativeTimes(), 15000);
  window.__telemetry = { sparks };
}
