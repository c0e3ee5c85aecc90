// The dashboard home: maps events to the cards the server rendered from the database.
//
//   system_metrics        → host CPU/memory/disk bars, open sockets
//   health_change         → health badge (with a pulse) and its reason
//   prediction_volume     → prediction counter and its trend arrow
//   model_deployed / model_status_change → the deployed model card
//   system_alert          → open alerts list and counts
//   activity_update       → recent activity
//   job_* / training_* / pipeline_* → running jobs with progress bars

import { realtime } from "../realtime.js";
import { formatPercent, getJSON, liveFragments, refreshRelativeTimes, relativeTime, setProgress, setStatusBadge, setText } from "../ui.js";

const data = JSON.parse(document.getElementById("dashboard-data")?.textContent || "{}");
const thresholds = data.thresholds || {};
const MAX_ACTIVITY = 12;
const MAX_ALERTS = 8;
const DONE_JOB_LINGER_MS = 5000;

const $ = (id) => document.getElementById(id);
const fromTemplate = (id) => $(id).content.firstElementChild.cloneNode(true);

// --- relative times ---------------------------------------------------------------------------------

// --- levels -------------------------------------------------------------------------------------------

export function levelFor(metric, value) {
  const limits = thresholds[metric];
  if (!limits || value == null) return "healthy";
  if (value >= limits[1]) return "critical";
  if (value >= limits[0]) return "warning";
  return "healthy";
}

function setMeter(meter, value) {
  if (!meter) return;
  const v = Math.max(0, Math.min(100, Number(value) || 0));
  meter.dataset.level = levelFor(meter.dataset.metric, value);
  const track = meter.querySelector(".meter__track");
  track?.setAttribute("aria-valuenow", String(Math.round(v)));
  const fill = meter.querySelector(".meter__fill");
  if (fill) fill.style.width = `${v.toFixed(1)}%`;
  setText(meter.querySelector(".meter__value"), value == null ? "—" : `${Math.round(value)}%`);
}

// --- hosts -------------------------------------------------------------------------------------------

function hostRow(host) {
  const list = $("hosts");
  let row = [...list.children].find((el) => el.dataset.host === host);
  if (!row) {
    row = fromTemplate("host-template");
    row.dataset.host = host;
    setText(row.querySelector(".host__name"), host);
    const rows = [...list.children];
    const after = rows.find((el) => el.dataset.host > host);
    list.insertBefore(row, after || null);
    $("hosts-empty").hidden = true;
  }
  return row;
}

realtime.on("system_metrics", (e) => {
  const row = hostRow(e.host);
  delete row.dataset.stale;
  row.querySelector(".host__stale").hidden = true;
  setText(row.querySelector(".host__role"), e.role || "");
  for (const metric of ["cpu_percent", "memory_percent", "disk_percent"]) {
    setMeter(row.querySelector(`.meter[data-metric="${metric}"]`), e[metric]);
  }
  row.classList.remove("is-updated");
  void row.offsetWidth; // restart the flash animation
  row.classList.add("is-updated");
  setText($("socket-count"), String(e.active_connections ?? 0));
  if (e.predictions_per_minute != null) setRate(e.predictions_per_minute);
  const card = $("health-card");
  if (card.dataset.level === "unknown") setHealth(e.current_health, null, false);
});

// --- health -------------------------------------------------------------------------------------------

function setHealth(level, reason, pulse = true) {
  const card = $("health-card");
  card.dataset.level = level;
  setStatusBadge(card.querySelector(".badge"), level);
  if (reason != null) {
    setText($("health-reason"), reason);
    $("health-reason").title = reason;
  }
  if (pulse) {
    card.classList.remove("is-pulsing");
    void card.offsetWidth;
    card.classList.add("is-pulsing");
  }
}

realtime.on("health_change", (e) => setHealth(e.current_health, e.reason));

// --- predictions and the model -------------------------------------------------------------------------

let lastRate = Number(data.predictionsPerMinute) || 0;

function setRate(rate) {
  const trend = $("predictions-trend");
  const r = Number(rate) || 0;
  const direction = r > lastRate + 0.01 ? "up" : r < lastRate - 0.01 ? "down" : trend.dataset.trend;
  if (direction !== trend.dataset.trend) {
    trend.dataset.trend = direction;
    setText(trend, { up: "↑", down: "↓", flat: "→" }[direction]);
    trend.setAttribute("aria-label", { up: "rising", down: "falling", flat: "steady" }[direction]);
  }
  lastRate = r;
  setText($("predictions-rate"), r.toLocaleString(undefined, { maximumFractionDigits: 0 }));
}

realtime.on("prediction_volume", (e) => {
  setText($("predictions-total"), String(e.total_predictions));
  setRate(e.predictions_per_minute);
});

let currentModelId = data.model ? data.model.id : null;

realtime.on("model_deployed", (e) => {
  const card = $("model-card");
  currentModelId = e.model_id;
  card.dataset.status = "active";
  card.querySelector(".dash-model__body").hidden = false;
  card.querySelector(".dash-model__empty").hidden = true;
  setText(card.querySelector('[data-field="name"]'), e.model_name);
  setText(card.querySelector('[data-field="version"]'), `v${e.model_version}`);
  setText(card.querySelector('[data-field="accuracy"]'), formatPercent(e.model_accuracy));
  const deployed = card.querySelector('[data-field="deployed"]');
  deployed.dateTime = e.deployment_timestamp || new Date().toISOString();
  setText(deployed, relativeTime(deployed.dateTime));
});

realtime.on("model_status_change", (e) => {
  if (e.model_id === currentModelId) $("model-card").dataset.status = e.status;
});

// --- alerts -------------------------------------------------------------------------------------------

let countTimer = null;

async function refreshAlertCounts() {
  const get = async (status) => {
    const url = new URL(data.api.alerts, location.origin);
    url.searchParams.set("status", status);
    url.searchParams.set("limit", "1");
    const { ok, body } = await getJSON(url);
    return ok ? body.count : null;
  };
  const [open, acknowledged] = await Promise.all([get("open"), get("acknowledged")]);
  if (open != null) setText($("alert-count"), String(open));
  if (acknowledged != null) setText($("alert-ack-count"), String(acknowledged));
}

// Items are rendered by the server (monitoring:alert-item, templates/monitoring/includes/alert_item.html).
const alertItems = liveFragments({
  url: (id) => data.alertItemUrl.replace(/\/0\/item\/$/, `/${id}/item/`),
  find: (id) => $("dash-alerts").querySelector(`[data-alert-id="${id}"]`),
  place: (item) => {
    const list = $("dash-alerts");
    list.prepend(item);
    while (list.children.length > MAX_ALERTS) list.lastElementChild.remove();
  },
  onUpdate: (item) => {
    if (item.dataset.status === "resolved") item.remove(); // resolved while its fragment was on the way
    $("alerts-empty").hidden = $("dash-alerts").children.length > 0;
  },
});

realtime.on("system_alert", (e) => {
  const alert = e.alert || {};
  if (alert.status === "resolved") {
    $("dash-alerts").querySelector(`[data-alert-id="${alert.id}"]`)?.remove();
    $("alerts-empty").hidden = $("dash-alerts").children.length > 0;
  } else if (alert.id != null) {
    alertItems.refresh(alert.id);
  }
  clearTimeout(countTimer);
  countTimer = setTimeout(refreshAlertCounts, 250);
});

// --- activity -------------------------------------------------------------------------------------------

realtime.on("activity_update", (e) => {
  const a = e.activity || {};
  if (a.action_type === "test") return;
  const list = $("dash-activity");
  if (a.id != null && list.querySelector(`[data-activity-id="${a.id}"]`)) return;
  const item = fromTemplate("activity-template");
  item.dataset.activityId = a.id ?? "";
  item.dataset.severity = a.severity_level || "info";
  item.dataset.action = a.action_type || "";
  setText(item.querySelector(".activity__title"), a.title || "");
  setText(item.querySelector(".activity__user"), a.user || "system");
  const time = item.querySelector("time");
  time.dateTime = a.created_at || e.timestamp;
  setText(time, relativeTime(time.dateTime));
  item.classList.add("is-new");
  list.prepend(item);
  while (list.children.length > MAX_ACTIVITY) list.lastElementChild.remove();
  $("activity-empty").hidden = true;
});

// --- running jobs -----------------------------------------------------------------------------------------

function jobUrl(kind, id) {
  const pattern = data.jobUrls?.[kind];
  return pattern ? pattern.replace(/\/0\/$/, `/${id}/`) : "#";
}

function jobRow(kind, id, { title, url } = {}) {
  const key = `${kind}-${id}`;
  const list = $("dash-jobs");
  let row = list.querySelector(`[data-job-key="${key}"]`);
  if (!row) {
    row = fromTemplate("job-template");
    row.dataset.jobKey = key;
    row.dataset.kind = kind;
    setText(row.querySelector(".job-item__kind"), kind.charAt(0).toUpperCase() + kind.slice(1));
    setText(row.querySelector(".job-item__title"), title || `${kind} #${id}`);
    row.querySelector(".job-item__title").href = url || "#";
    row.classList.add("is-new");
    list.prepend(row);
    $("jobs-empty").hidden = true;
  } else if (title && row.dataset.titled !== "true") {
    setText(row.querySelector(".job-item__title"), title);
  }
  if (title) row.dataset.titled = "true";
  clearTimeout(row._removeTimer);
  return row;
}

function updateJob(row, { status, progress, step }) {
  if (status) setStatusBadge(row.querySelector(".badge"), status);
  if (progress != null || status) setProgress(row.querySelector(".progress"), progress ?? readProgress(row), status);
  if (step != null) setText(row.querySelector(".job-item__step"), String(step));
}

function readProgress(row) {
  return Number(row.querySelector(".progress")?.getAttribute("aria-valuenow")) || 0;
}

function finishJob(row, status, step) {
  updateJob(row, { status, progress: status === "succeeded" ? 100 : null, step });
  row.classList.add("is-done");
  row._removeTimer = setTimeout(() => {
    row.remove();
    $("jobs-empty").hidden = $("dash-jobs").children.length > 0;
  }, DONE_JOB_LINGER_MS);
}

realtime.on("job_progress", (e) => {
  const row = jobRow("processing", e.job_id, { title: `Processing job #${e.job_id}`, url: jobUrl("processing", e.dataset_id) });
  updateJob(row, { status: e.status, progress: e.progress, step: e.current_step });
});
realtime.on("job_completed", (e) => {
  const row = jobRow("processing", e.job_id, { title: `Processing job #${e.job_id}`, url: jobUrl("processing", e.dataset_id) });
  finishJob(row, e.status, e.error || e.status);
});

realtime.on("training_started", (e) => {
  const row = jobRow("training", e.job_id, { title: `Training · ${e.model_name}`, url: jobUrl("training", e.job_id) });
  updateJob(row, { status: "running", progress: 0, step: `0 of ${e.total_epochs} epochs` });
});
realtime.on("training_progress", (e) => {
  const row = jobRow("training", e.job_id, { url: jobUrl("training", e.job_id) });
  updateJob(row, { status: "running", progress: e.progress, step: e.message || e.current_stage });
});
realtime.on("training_completed", (e) => {
  const row = jobRow("training", e.job_id, { url: jobUrl("training", e.job_id) });
  finishJob(row, "succeeded", e.message);
});
realtime.on("training_failed", (e) => {
  const row = jobRow("training", e.job_id, { url: jobUrl("training", e.job_id) });
  finishJob(row, e.error_code === "CANCELLED" ? "cancelled" : "failed", e.error);
});

realtime.on("pipeline_status", (e) => {
  if (e.status !== "queued" && e.status !== "running") return;
  const row = jobRow("pipeline", e.run_id, { title: `Pipeline run #${e.run_id}`, url: jobUrl("pipeline", e.run_id) });
  updateJob(row, { status: e.status });
});
realtime.on("pipeline_progress", (e) => {
  const row = jobRow("pipeline", e.run_id, { title: `Pipeline run #${e.run_id}`, url: jobUrl("pipeline", e.run_id) });
  updateJob(row, {
    status: e.status,
    progress: e.progress,
    step: `Step ${Math.min(e.step_index + 1, e.total_steps)} of ${e.total_steps}: ${e.current_step}`,
  });
});
realtime.on("pipeline_completed", (e) => {
  const row = jobRow("pipeline", e.run_id, { title: `Pipeline run #${e.run_id}`, url: jobUrl("pipeline", e.run_id) });
  finishJob(row, e.status, e.message);
});
realtime.on("pipeline_failed", (e) => {
  const row = jobRow("pipeline", e.run_id, { title: `Pipeline run #${e.run_id}`, url: jobUrl("pipeline", e.run_id) });
  finishJob(row, "failed", `Failed at ${e.failed_step}: ${e.error}`);
});

refreshRelativeTimes();
setInterval(refreshRelativeTimes, 15000);
