// One training job: stats, stage list and learning curves, live from `training_job.<id>` events and
// drawn from the stored epoch history on load. Chart.js is the classic script loaded before this one.

import { realtime } from "../realtime.js";
import { getJSON, postJSON, setProgress, setStatusBadge, setText, toast } from "../ui.js";

const job = JSON.parse(document.getElementById("job-data").textContent);
const $ = (id) => document.getElementById(id);
const STAGES = ["data_preparation", "feature_engineering", "model_training", "validation", "finalization"];
const STAGE_LABELS = Object.fromEntries(STAGES.map((s) => [s, s.charAt(0).toUpperCase() + s.slice(1).replace(/_/g, " ")]));
let status = job.status;

// --- charts ---------------------------------------------------------------------------------------

function makeChart(canvas, label, color) {
  if (!window.Chart || !canvas) return null;
  return new window.Chart(canvas, {
    type: "line",
    data: { labels: [], datasets: [{ label, data: [], borderColor: color, backgroundColor: `${color}22`, fill: true, tension: 0.25, pointRadius: 2, borderWidth: 2 }] },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: { duration: 200 },
      interaction: { intersect: false, mode: "index" },
      plugins: { legend: { display: false } },
      scales: { x: { title: { display: true, text: "Epoch" }, ticks: { precision: 0 } }, y: { beginAtZero: false } },
    },
  });
}

const lossChart = makeChart($("loss-chart"), "Loss", "#4f46e5");
const accuracyChart = makeChart($("accuracy-chart"), job.task === "regression" ? "R²" : "Accuracy", "#12b76a");
let lastEpoch = 0;

function plot(epoch, loss, accuracy) {
  if (!epoch || epoch <= lastEpoch) return;
  lastEpoch = epoch;
  for (const [chart, value] of [[lossChart, loss], [accuracyChart, accuracy]]) {
    if (!chart) continue;
    chart.data.labels.push(epoch);
    chart.data.datasets[0].data.push(value ?? null);
  }
}

function drawHistory(history) {
  for (const chart of [lossChart, accuracyChart]) {
    if (!chart) continue;
    chart.data.labels = [];
    chart.data.datasets[0].data = [];
  }
  lastEpoch = 0;
  for (const h of history || []) plot(h.epoch, h.loss, h.accuracy);
  lossChart?.update();
  accuracyChart?.update();
}

drawHistory(job.history);

// --- stats ----------------------------------------------------------------------------------------

function fmt(value, digits) {
  return value == null || Number.isNaN(Number(value)) ? "—" : Number(value).toFixed(digits);
}

function setStages(stage, state) {
  const index = STAGES.indexOf(stage);
  for (const item of $("job-stages").children) {
    const i = STAGES.indexOf(item.dataset.stage);
    item.dataset.state = state === "succeeded" || i < index ? "done" : i === index ? (state === "running" ? "current" : "failed") : "pending";
  }
}

function setStatus(next) {
  status = next;
  setStatusBadge($("job-status").querySelector(".badge"), next);
  const bar = $("job-progress").querySelector(".progress");
  if (bar) bar.dataset.status = next;
  if (next !== "queued" && next !== "running") {
    if ($("cancel-job")) $("cancel-job").hidden = true;  // absent for who may not cancel
    setText($("job-eta"), "—");
  }
}

function onProgress(e) {
  if (status === "queued") setStatus("running");
  setProgress($("job-progress").querySelector(".progress"), e.progress, "running");
  setText($("job-stage"), STAGE_LABELS[e.stage] || e.stage);
  setText($("job-message"), e.message || e.current_stage);
  $("job-message").title = e.message || "";
  setText($("job-epoch"), String(e.current_epoch));
  if (e.current_loss != null) setText($("job-loss"), fmt(e.current_loss, 4));
  if (e.live_accuracy != null) setText($("job-accuracy"), fmt(e.live_accuracy, 3));
  $("job-eta").innerHTML = e.estimated_time_remaining == null ? "—" : `${fmt(e.estimated_time_remaining, 1)}<small> s</small>`;
  setStages(e.stage, "running");
  if (e.stage === "model_training" && e.current_epoch > 0) {
    if (e.current_epoch > lastEpoch + 1) {
      // Epochs between two coalesced events: take them from the stored history.
      refresh();
    } else {
      plot(e.current_epoch, e.current_loss, e.live_accuracy);
      lossChart?.update("none");
      accuracyChart?.update("none");
    }
  }
}

// --- reload from the API (completion, gaps) -------------------------------------------------------------

let refreshing = null;
function refresh() {
  refreshing ??= getJSON(job.api.job)
    .then(({ ok, body }) => {
      if (ok) render(body);
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

function render(body) {
  drawHistory(body.history);
  setStatus(body.status);
  setProgress($("job-progress").querySelector(".progress"), body.progress, body.status);
  setText($("job-stage"), STAGE_LABELS[body.stage] || "Waiting");
  setText($("job-message"), body.message || "");
  setText($("job-epoch"), String(body.current_epoch));
  if (body.current_loss != null) setText($("job-loss"), fmt(body.current_loss, 4));
  const score = body.validation_score ?? body.live_accuracy;
  if (score != null) setText($("job-accuracy"), fmt(score, 3));
  if (body.duration != null) setText($("job-duration"), `${fmt(body.duration, 1)} s`);
  if (body.stage) setStages(body.stage, body.status);
  if (body.status === "failed" || body.status === "cancelled") showError(body.error_code, body.error, body.stage_failed, body.suggestions);
  if (body.model_version) {
    const link = $("model-link");
    link.href = `/training/models/#model-${body.model_version}`;
    setText(link.querySelector("span"), body.model_label || "Model");
    link.hidden = false;
  }
  if (body.metrics) showMetrics(body);
}

function showError(code, error, stage, suggestions) {
  $("job-error").hidden = false;
  const when = stage === "queued" ? " before it started" : stage ? ` during ${stage.replace(/_/g, " ")}` : "";
  setText($("job-error-title"), `${code === "CANCELLED" ? "Cancelled" : "Failed"} · ${code}${when}`);
  setText($("job-error-text"), error || "");
  $("job-suggestions").replaceChildren(
    ...(suggestions || []).map((s) => {
      const li = document.createElement("li");
      li.textContent = s;
      return li;
    }),
  );
}

function showMetrics(body) {
  const list = $("job-metrics-list");
  const entries = Object.entries(body.metrics || {});
  if (body.final_accuracy != null) entries.push([`training ${job.task === "regression" ? "R²" : "accuracy"}`, body.final_accuracy]);
  list.replaceChildren(
    ...entries.map(([key, value]) => {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = key;
      dd.textContent = fmt(value, 4);
      div.append(dt, dd);
      return div;
    }),
  );
  $("job-metrics").hidden = entries.length === 0;
}

// --- live ---------------------------------------------------------------------------------------------

const mine = (e) => e.job_id === job.id;
realtime.subscribe([`training_job.${job.id}`]);
realtime.on("training_started", (e) => mine(e) && setStatus("running"));
realtime.on("training_progress", (e) => mine(e) && onProgress(e));
realtime.on("training_completed", (e) => {
  if (!mine(e)) return;
  setStatus("succeeded");
  setProgress($("job-progress").querySelector(".progress"), 100, "succeeded");
  setStages("finalization", "succeeded");
  setText($("job-accuracy"), fmt(e.validation_score, 3));
  refresh(); // the complete history, metrics and the registered version
});
realtime.on("training_failed", (e) => {
  if (!mine(e)) return;
  const next = e.error_code === "CANCELLED" ? "cancelled" : "failed";
  setStatus(next);
  setProgress($("job-progress").querySelector(".progress"), e.progress_when_failed, next);
  setStages(e.stage_failed, next);
  showError(e.error_code, e.error, e.stage_failed, e.suggestions);
  refresh();
});
realtime.onResync(() => refresh());

$("cancel-job")?.addEventListener("click", async () => {
  const button = $("cancel-job");
  button.disabled = true;
  const { ok, body } = await postJSON(job.api.cancel);
  if (!ok) {
    toast({ kind: "error", title: "Could not cancel", message: body?.detail || "The job could not be cancelled." });
    button.disabled = false;
    return;
  }
  button.lastChild.textContent = "Cancelling…";
  if (body.status === "cancelled") render(body);
});

// A page rendered while the job ran may have missed epochs between render and socket open.
if (status === "running" || status === "queued") setTimeout(refresh, 1500);
