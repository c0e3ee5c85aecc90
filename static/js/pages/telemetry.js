// The Telemetry page: a card per source of the current project (templates/telemetry/includes/
// source_card.html) with its status, last values and a sparkline per metric (uPlot, the last hour
// from the series API). Live: each visible source's `telemetry_points` extend its sparklines and
// re-render its card (coalesced); a timer re-renders the cards so "silent" shows without an event.

import { realtime } from "../realtime.js";
import { liveFragments, refreshRelativeTimes, setText } from "../ui.js";
import { columnsFrom, fetchSeries, insertPoint, sparkline, trimBefore } from "./telemetry_charts.js";

const data = JSON.parse(document.getElementById("telemetry-data")?.textContent || "{}");
const WINDOW_MS = (data.sparklineSeconds || 3600) * 1000;
const CARD_REFRESH_MS = 2000; // at most one card render per source this often while points arrive
const STATUS_REFRESH_MS = 30000;

const sparks = new Map(); // metric id → {chart, data}
const byName = new Map(); // `${source id}/${metric name}` → metric id
const pending = new Map(); // source id → timer of its coalesced card refresh

const cards = liveFragments({
  url: (id) => data.cardUrl.replace(/\/0\/card\/$/, `/${id}/card/`),
  find: (id) => document.getElementById(`tl-source-${id}`),
  place: (el) => document.getElementById("tl-sources")?.append(el),
  onUpdate: (el) => {
    reattach(el);
    updateSummary();
  },
});

/** After a morph the sparkline holders are empty again: put each chart back into its holder. */
function reattach(root) {
  for (const holder of root.querySelectorAll("[data-spark]")) {
    const spark = sparks.get(Number(holder.dataset.spark));
    if (spark && spark.chart.root.parentElement !== holder) holder.append(spark.chart.root);
  }
}

function updateSummary() {
  const all = document.querySelectorAll(".tl-card");
  const live = document.querySelectorAll('.tl-card[data-status="live"]');
  setText(document.querySelector("[data-live-count]"), String(live.length));
  return all.length;
}

async function initSparkline(source, metric) {
  byName.set(`${source.id}/${metric.name}`, metric.id);
  const holder = document.querySelector(`[data-spark="${metric.id}"]`);
  if (!holder) return;
  const end = Date.now();
  const series = await fetchSeries(data.seriesUrl, { source: source.id, metric: metric.name, start: end - WINDOW_MS, end });
  const columns = columnsFrom(series);
  const chart = sparkline(holder, columns);
  sparks.set(metric.id, { chart, data: columns });
  draw(metric.id);
}

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

function onPoints(event) {
  const touched = new Set();
  for (const [metric, x, y] of event.points || []) {
    const id = byName.get(`${event.source_id}/${metric}`);
    const spark = id != null ? sparks.get(id) : null;
    if (!spark) continue;
    insertPoint(spark.data, x, y);
    touched.add(id);
  }
  for (const id of touched) draw(id);
  scheduleCard(event.source_id);
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

if (data.sources?.length) {
  const ids = new Set(data.sources.map((s) => s.id));
  for (const source of data.sources) for (const metric of source.metrics) initSparkline(source, metric);
  realtime.on("telemetry_points", (e) => {
    if (ids.has(e.source_id)) onPoints(e);
  });
  // Each source's topic, within the socket's subscription budget (the page's other topics aside).
  const budget = Math.max(0, (data.maxSubscriptions || 200) - 10);
  realtime.subscribe(data.sources.slice(0, budget).map((s) => `telemetry.${s.id}`));
  setInterval(() => {
    for (const id of ids) cards.refresh(id);
    for (const id of sparks.keys()) draw(id);
  }, STATUS_REFRESH_MS);
  setInterval(() => refreshRelativeTimes(), 15000);
  window.__telemetry = { sparks };
}
