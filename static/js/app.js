// Loaded on every logged-in page: starts the live connection, drives the header's connection
// indicator and the offline banner, and turns notable events into toasts.

import { realtime } from "./realtime.js";
import { formatPercent, initServerToasts, refreshFragment, renderConnection, renderOfflineBanner, toast } from "./ui.js";

// --- events → toasts ------------------------------------------------------------------------------
// One rule per event type: (event) → {kind, title, message, sticky?} or null for no toast.
// Pages extend it: `import { toastRules } from "/static/js/app.js"; toastRules.my_event = (e) => ...`.

const ALERT_KINDS = { critical: "error", high: "error", medium: "warning", low: "info" };
const HEALTH_KINDS = { critical: "error", warning: "warning", healthy: "success" };

export const toastRules = {
  training_completed: (e) => ({
    kind: "success",
    title: "Training completed",
    message: e.message || `Job #${e.job_id} reached ${formatPercent(e.final_accuracy)} accuracy.`,
  }),
  training_failed: (e) => ({
    kind: "error",
    title: e.error_code === "CANCELLED" ? "Training cancelled" : "Training failed",
    message: e.error || `Job #${e.job_id} failed at ${e.stage_failed}.`,
  }),
  pipeline_completed: (e) =>
    e.status === "cancelled"
      ? { kind: "warning", title: "Pipeline cancelled", message: e.message || `Run #${e.run_id} was cancelled.` }
      : { kind: "success", title: "Pipeline completed", message: e.message || `Run #${e.run_id} finished.` },
  pipeline_failed: (e) => ({
    kind: "error",
    title: "Pipeline failed",
    message: `Run #${e.run_id} failed at “${e.failed_step}”: ${e.error}`,
  }),
  model_deployed: (e) => ({
    kind: "success",
    title: "Model deployed",
    message: e.message || `${e.model_name} v${e.model_version} is now serving.`,
  }),
  dataset_processed: (e) =>
    e.status === "ready"
      ? { kind: "success", title: "Dataset ready", message: `Dataset #${e.dataset_id} was profiled and is ready.` }
      : e.status === "invalid"
        ? { kind: "error", title: "Dataset invalid", message: e.data?.error || `Dataset #${e.dataset_id} could not be processed.` }
        : null,
  job_completed: (e) =>
    e.status === "succeeded"
      ? { kind: "success", title: "Processing job finished", message: `Job #${e.job_id} on dataset #${e.dataset_id} succeeded.` }
      : e.status === "cancelled"
        ? { kind: "warning", title: "Processing job cancelled", message: e.error || `Job #${e.job_id} was cancelled.` }
        : { kind: "error", title: "Processing job failed", message: e.error || `Job #${e.job_id} failed.` },
  file_validated: (e) =>
    e.status === "error" ? { kind: "error", title: `${e.filename} was rejected`, message: e.error || "The file is not valid." } : null,
  system_alert: (e) => {
    const alert = e.alert || {};
    if (alert.status !== "open") return null;
    return {
      kind: ALERT_KINDS[alert.priority] || "info",
      title: alert.title || "System alert",
      message: alert.message || "",
      sticky: alert.priority === "critical" ? true : undefined,
    };
  },
  // A telemetry series' anomaly (streaming, or a range detection's first flagged readings): every
  // page of the project's members toasts it. Host-metric anomalies only refresh the Monitoring page.
  // (An alert it opens toasts too, as every alert does: under its own title.)
  anomaly_detected: (e) => {
    if (e.source !== "telemetry") return null;
    const shown = (v) => (v == null ? "—" : Number(v).toLocaleString(undefined, { maximumFractionDigits: 2 }));
    return {
      kind: e.severity === "low" ? "info" : "warning",
      title: `${e.entity} · ${e.metric}: ${e.severity} anomaly`,
      message:
        shown(e.value) +
        (e.baseline == null ? "" : ` (usually ${shown(e.baseline)})`) +
        (e.observed_at ? ` at ${new Date(e.observed_at).toLocaleString()}` : ""),
    };
  },
  health_change: (e) => ({
    kind: HEALTH_KINDS[e.current_health] || "info",
    title: `System health: ${e.current_health}`,
    message: e.reason || e.recommended_action || "",
  }),
  // One toast per failed delivery, not per retry: its first failure and its last (no retry left).
  notification_failed: (e) =>
    e.attempt === 1 || !e.retrying
      ? {
          kind: e.retrying ? "warning" : "error",
          title: e.retrying ? `Notification to ${e.channel_name} failed, retrying` : `Notification to ${e.channel_name} failed`,
          message: e.error || "The channel did not accept the message.",
        }
      : null,
  notification_sent: (e) =>
    e.kind === "test" ? { kind: "success", title: "Test notification sent", message: `${e.channel_name} accepted the test message.` } : null,
  activity_update: (e) =>
    e.activity?.action_type === "test"
      ? { kind: "info", title: e.activity.title || "Test event", message: e.activity.description || "" }
      : null,
  // A client notification (not a catalog event): the socket's replay could not cover a gap.
  resync: () => ({ kind: "warning", title: "Missed updates — refreshing", message: "Some live updates were missed while offline." }),
};

// A range detection sends anomaly_detected for up to 50 readings at once: toast the first few of
// each detection, then its closing summary (anomaly_detection_completed) gives the count.
const DETECTION_TOASTS = 5;
const detectionToasts = new Map();
const anomalyToast =
  toastRules.anomaly_detected ||
  ((e) =>
    e.source === "telemetry"
      ? {
          kind: ALERT_KINDS[e.severity] || "warning",
          title: `Anomaly: ${e.metric} on ${e.entity}`,
          message: `${e.value == null ? "—" : Number(e.value).toLocaleString()}` + (e.observed_at ? ` at ${new Date(e.observed_at).toLocaleString()}` : ""),
        }
      : null);
toastRules.anomaly_detected = (e) => {
  if (e.detection_id == null || e.source !== "telemetry") return anomalyToast(e);
  const shown = detectionToasts.get(e.detection_id) || 0;
  detectionToasts.set(e.detection_id, shown + 1);
  if (shown >= DETECTION_TOASTS) return null;
  const spec = anomalyToast(e);
  // Many at once: none of them sticks (the summary says how many there were).
  return spec ? { ...spec, kind: spec.kind === "error" ? "warning" : spec.kind, sticky: false } : null;
};
toastRules.anomaly_detection_completed = (e) => {
  detectionToasts.delete(e.detection_id);
  if (e.status === "succeeded") {
    return {
      kind: e.n_flagged ? "warning" : "success",
      title: `Anomaly detection finished: ${e.entity}`,
      message: `${(e.n_flagged ?? 0).toLocaleString()} of ${(e.n_rows ?? 0).toLocaleString()} readings flagged.`,
    };
  }
  return e.status === "cancelled"
    ? { kind: "warning", title: `Anomaly detection cancelled: ${e.entity}`, message: e.error || "" }
    : { kind: "error", title: `Anomaly detection failed: ${e.entity}`, message: e.error || "" };
};

export function toastForEvent(event) {
  const rule = toastRules[event.type];
  return rule ? rule(event) : null;
}

realtime.on("*", (event) => {
  const spec = toastForEvent(event);
  if (spec) toast(spec);
});

// --- the user's projects changed (a membership added, changed or removed) ------------------------
// The server sends `projects_changed` once the socket follows the new set of projects. The project
// switcher (`<nav data-project-switcher data-fragment-url="...">`) is re-rendered by the server and
// morphed in; a page showing a project the user left (`<body data-project-id>`) reloads, and the
// server picks one they may still see.

let projectsRefresh = Promise.resolve();
realtime.on("projects_changed", (event) => {
  const projects = Array.isArray(event.projects) ? event.projects : [];
  const current = Number(document.body.dataset.projectId) || null;
  if (current && !projects.some((p) => p.id === current)) {
    location.reload();
    return;
  }
  const switcher = document.querySelector("[data-project-switcher]");
  const url = switcher?.dataset.fragmentUrl;
  if (!url) return;
  // One after the other: the last event's list is the one that stays.
  projectsRefresh = projectsRefresh.then(() => refreshFragment(url, document.querySelector("[data-project-switcher]"))).catch(
    (err) => console.warn("could not refresh the project switcher", err),
  );
});

// --- header: connection indicator, offline banner, mobile navigation -----------------------------

const indicator = document.getElementById("connection");
const banner = document.getElementById("offline-banner");
indicator?.querySelector(".connection__retry")?.addEventListener("click", () => realtime.retry());
realtime.onState((snap) => {
  renderConnection(indicator, snap);
  renderOfflineBanner(banner, snap);
});

function initNavigation() {
  const toggle = document.querySelector(".nav-toggle");
  const sidebar = document.getElementById("sidebar");
  const backdrop = document.querySelector("[data-nav-close]");
  if (!toggle || !sidebar) return;
  const setOpen = (open) => {
    document.body.classList.toggle("nav-open", open);
    toggle.setAttribute("aria-expanded", String(open));
    toggle.setAttribute("aria-label", open ? "Close navigation" : "Open navigation");
    if (backdrop) backdrop.hidden = !open;
  };
  toggle.addEventListener("click", () => setOpen(!document.body.classList.contains("nav-open")));
  backdrop?.addEventListener("click", () => setOpen(false));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && document.body.classList.contains("nav-open")) {
      setOpen(false);
      toggle.focus();
    }
  });
}

initServerToasts();
initNavigation();
realtime.start();

export { realtime, toast };
