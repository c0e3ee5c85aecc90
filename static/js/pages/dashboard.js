// The dashboard home: maps events to the cards the server rendered from the database.
//
// Hosts, recent activity and running jobs are rendered by the server: on their events the page
// fetches the fragment (monitoring:hosts, activity-feed, monitoring:job-item) and morphs it in.
//
// The socket hears every project of the user; the page shows its current project (data.projectId):
// events of another project are left out, global ones (hosts, health, system alerts) kept.
//
//   system_metrics        → host CPU/memory/disk bars, open sockets (hosts only, no model figures)
//   health_change         → health badge (with a pulse) and its reason
//   project_metrics       → the project's prediction rate, total and model accuracy
//   prediction_volume     → prediction counter and its trend arrow
//   model_deployed / model_status_change → the deployed model card
//   system_alert          → open alerts list and counts
//   activity_update       → recent activity
//   job_* / training_* / pipeline_* → running jobs with progress bars

import { realtime } from "../realtime.js";
import { flash, formatPercent, getJSON, liveElement, liveFragments, refreshRelativeTimes, relativeTime, setStatusBadge, setText } from "../ui.js";

const data = JSON.parse(document.getElementById("dashboard-data")?.textContent || "{}");
const MAX_ALERTS = 8;
const DONE_JOB_LINGER_MS = 5000;

const $ = (id) => document.getElementById(id);
// An event of this page's project, or a global one (no project_id).
const ours = (e) => e.project_id == null || e.project_id === data.projectId;
const ourProject = (e) => data.projectId != null && e.project_id === data.projectId;
const JOB_DONE = new Set(["succeeded", "failed", "cancelled"]);

// --- hosts -------------------------------------------------------------------------------------------

const updatedHosts = new Set();

// Rows are rendered by the server (monitoring/includes/host_list.html).
const refreshHosts = liveElement(data.hostsUrl, "hosts", (list) => {
  for (const row of list.children) {
    if (!updatedHosts.has(row.dataset.host)) continue;
    row.classList.remove("is-updated");
    void row.offsetWidth; // restart the flash animation
    row.classList.add("is-updated");
  }
  updatedHosts.clear();
  $("hosts-empty").hidden = list.children.length > 0;
});

realtime.on("system_metrics", (e) => {
  updatedHosts.add(e.host);
  refreshHosts();
  setText($("socket-count"), String(e.active_connections ?? 0));
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
  if (!ourProject(e)) return;
  setText($("predictions-total"), String(e.total_predictions));
  setRate(e.predictions_per_minute);
});

realtime.on("project_metrics", (e) => {
  if (!ourProject(e)) return;
  setText($("predictions-total"), String(e.predictions_total));
  setRate(e.predictions_per_minute);
  if (e.model && e.model.id === currentModelId) {
    setText($("model-card").querySelector('[data-field="accuracy"]'), formatPercent(e.current_accuracy));
  }
});

let currentModelId = data.model ? data.model.id : null;

realtime.on("model_deployed", (e) => {
  if (!ourProject(e)) return;
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
  if (!ourProject(e)) return;
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
  if (!ours(e)) return;
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

const activityIds = (list) => new Set([...list.children].map((item) => item.dataset.activityId));
let shownActivity = activityIds($("dash-activity"));

// The feed is rendered by the server (includes/activity_list.html); new lines are highlighted.
const refreshActivity = liveElement(data.activityUrl, "dash-activity", (list) => {
  for (const item of list.children) if (!shownActivity.has(item.dataset.activityId)) flash(item);
  shownActivity = activityIds(list);
  $("activity-empty").hidden = list.children.length > 0;
});

realtime.on("activity_update", (e) => {
  const a = e.activity || {};
  if (!ourProject(e)) return;
  if (a.action_type === "test" || shownActivity.has(String(a.id))) return;
  refreshActivity();
});

// --- running jobs -----------------------------------------------------------------------------------------

const removeTimers = new Map();

function jobsEmpty() {
  $("jobs-empty").hidden = $("dash-jobs").children.length > 0;
}

// Rows are rendered by the server (monitoring:job-item, monitoring/includes/job_item.html), keyed
// "<kind>-<id>"; a finished job shows how it ended for a few seconds, then leaves.
const jobItems = liveFragments({
  url: (key) => {
    const [kind, id] = key.split("-");
    return data.jobItemUrl.replace("/kind/0/", `/${kind}/${id}/`);
  },
  find: (key) => $("dash-jobs").querySelector(`[data-job-key="${key}"]`),
  place: (item) => $("dash-jobs").prepend(item),
  gone: (key, item) => {
    item?.remove();
    jobsEmpty();
  },
  onUpdate: (item, key) => {
    clearTimeout(removeTimers.get(key));
    if (JOB_DONE.has(item.dataset.status)) {
      item.classList.add("is-done");
      removeTimers.set(key, setTimeout(() => {
        removeTimers.delete(key);
        item.remove();
        jobsEmpty();
      }, DONE_JOB_LINGER_MS));
    }
    jobsEmpty();
  },
});

const refreshJob = (kind, id) => jobItems.refresh(`${kind}-${id}`);

for (const type of ["job_progress", "job_completed"]) realtime.on(type, (e) => ours(e) && refreshJob("processing", e.job_id));
for (const type of ["training_started", "training_progress", "training_completed", "training_failed"]) {
  realtime.on(type, (e) => ours(e) && refreshJob("training", e.job_id));
}
for (const type of ["pipeline_progress", "pipeline_completed", "pipeline_failed"]) {
  realtime.on(type, (e) => ours(e) && refreshJob("pipeline", e.run_id));
}
realtime.on("pipeline_status", (e) => {
  if (!ours(e)) return;
  if (e.status === "queued" || e.status === "running") refreshJob("pipeline", e.run_id);
});

refreshRelativeTimes();
setInterval(refreshRelativeTimes, 15000);
