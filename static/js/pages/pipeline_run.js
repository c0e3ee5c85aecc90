// One pipeline run: the steps as a vertical graph (state, duration, outputs) and a live tail of the
// log. The page follows this run's own topic, `pipeline_run.<id>`: pipeline_step (each step's state
// and new log lines) only goes there. The realtime client keeps the socket's own `dashboard` topic
// (it cannot be left from the page), so events are filtered by run id.

import { realtime } from "../realtime.js";
import { getJSON, humanize, postJSON, setProgress, setStatusBadge, setText, toast } from "../ui.js";

const data = JSON.parse(document.getElementById("run-data").textContent);
const run = data.run;
const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["queued", "running"]);
const MAX_LOG_LINES = 2000;
let status = run.status;

// --- the steps --------------------------------------------------------------------------------------

function node(index) {
  return document.querySelector(`.step-node[data-index="${index}"]`);
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function span(text, className) {
  const s = document.createElement("span");
  s.className = className;
  s.textContent = text;
  return s;
}

function renderOutputs(li, output) {
  if (!output) return;
  const parts = [];
  if (output.dataset_id && output.processing_job_id) parts.push(link(`/datasets/${output.dataset_id}/`, `Dataset #${output.dataset_id}`));
  if (output.training_job_id) parts.push(link(`/training/jobs/${output.training_job_id}/`, `Training job #${output.training_job_id}`));
  if (output.model_version_id) parts.push(link(`/training/models/#model-${output.model_version_id}`, output.model ? `Model ${output.model}` : `Model #${output.model_version_id}`));
  if (output.processing_job_id) parts.push(span(`Processing job #${output.processing_job_id}`, "muted"));
  const m = output.metrics;
  if (m && m.metric) {
    const pill = span(`${m.metric} = ${m.value == null ? "—" : Number(m.value).toFixed(4)} (threshold ${m.threshold})`, "metric-pill");
    pill.dataset.passed = String(Boolean(m.passed));
    parts.push(pill);
  }
  if (parts.length) li.querySelector("[data-step-outputs]").replaceChildren(...parts);
}

function setStep(e) {
  const li = node(e.step_index);
  if (!li) return;
  const previous = li.dataset.status;
  li.dataset.status = e.status;
  setStatusBadge(li.querySelector("[data-step-status] .badge"), e.status);
  if (e.status === "running" && previous !== "running") li.dataset.started = e.timestamp;
  if (!ACTIVE.has(e.status) && !li.dataset.finished) li.dataset.finished = e.timestamp;
  if (e.output?.duration != null) setText(li.querySelector("[data-step-duration]"), `${Number(e.output.duration).toFixed(1)} s`);
  renderOutputs(li, e.output);
  const error = li.querySelector("[data-step-error]");
  if (e.error) {
    error.textContent = e.error;
    error.hidden = false;
  }
  if (e.status === "running") li.scrollIntoView?.({ block: "nearest" });
}

// --- the log ----------------------------------------------------------------------------------------

const logEl = $("run-log");
function appendLog(e) {
  if (!e.log?.length) return;
  const stick = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 8;
  const text = e.log.map((line) => `[${e.step_index + 1} ${e.kind}] ${line}\n`).join("");
  logEl.append(document.createTextNode(text));
  while (logEl.childNodes.length > 1 && logEl.childNodes.length > MAX_LOG_LINES) logEl.firstChild.remove();
  if (stick) logEl.scrollTop = logEl.scrollHeight;
}
logEl.scrollTop = logEl.scrollHeight;

// --- the run ----------------------------------------------------------------------------------------

function setStatus(next, message) {
  status = next;
  setStatusBadge($("run-status").querySelector(".badge"), next);
  const bar = $("run-progress").querySelector(".progress");
  if (bar) bar.dataset.status = next;
  if (message != null) {
    setText($("run-message"), message);
    $("run-message").title = message;
  }
  // A button the user may not press is not on the page; its locked hint follows the same state.
  for (const id of ["cancel-run", "cancel-run-locked"]) if ($(id)) $(id).hidden = !ACTIVE.has(next);
  for (const id of ["retry-run", "retry-run-locked"]) if ($(id)) $(id).hidden = !(next === "failed" || next === "cancelled");
  if (next === "running" && !$("run-duration").dataset.started) $("run-duration").dataset.started = new Date().toISOString();
  if (!ACTIVE.has(next) && !$("run-duration").dataset.finished) $("run-duration").dataset.finished = new Date().toISOString();
}

function showError(step, error) {
  $("run-error").hidden = false;
  setText($("run-error-title"), `Failed at ${step}`);
  setText($("run-error-text"), error || "");
}

function secondsBetween(started, finished) {
  if (!started) return null;
  const end = finished ? Date.parse(finished) : Date.now();
  return Math.max(0, (end - Date.parse(started)) / 1000);
}

setInterval(() => {
  const d = $("run-duration");
  const s = secondsBetween(d.dataset.started, d.dataset.finished);
  if (s != null && ACTIVE.has(status)) d.innerHTML = `${s.toFixed(1)}<small> s</small>`;
  for (const li of document.querySelectorAll('.step-node[data-status="running"]')) {
    const t = secondsBetween(li.dataset.started, null);
    if (t != null) setText(li.querySelector("[data-step-duration]"), `${t.toFixed(1)} s`);
  }
}, 500);

// Reload everything from the API (when the run ends, or after a replay gap).
async function refresh() {
  const { ok, body } = await getJSON(data.api.run);
  if (!ok) return;
  setStatus(body.status, body.message);
  setProgress($("run-progress").querySelector(".progress"), body.progress, body.status);
  if (body.duration != null) $("run-duration").innerHTML = `${Number(body.duration).toFixed(1)}<small> s</small>`;
  if (body.status === "failed") showError(body.failed_step || "a step", body.error);
  // The stored log is the whole truth: it also holds lines sent before this page subscribed.
  const stick = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 8;
  const lines = body.step_runs.flatMap((step) => (step.log || []).map((line) => `[${step.index + 1} ${step.kind}] ${line}\n`));
  logEl.replaceChildren(document.createTextNode(lines.slice(-MAX_LOG_LINES).join("")));
  if (stick) logEl.scrollTop = logEl.scrollHeight;
  for (const step of body.step_runs) {
    const li = node(step.index);
    if (!li) continue;
    li.dataset.status = step.status;
    setStatusBadge(li.querySelector("[data-step-status] .badge"), step.status);
    if (step.duration != null) setText(li.querySelector("[data-step-duration]"), `${Number(step.duration).toFixed(1)} s`);
    li.dataset.started = step.started_at || "";
    li.dataset.finished = step.finished_at || "";
    const output = { ...step.output, metrics: step.metrics, dataset_id: step.output_dataset, model_version_id: step.model_version,
      processing_job_id: step.processing_job, training_job_id: step.training_job, model: step.model_version_label };
    renderOutputs(li, output);
    if (step.error) {
      const error = li.querySelector("[data-step-error]");
      error.textContent = step.error;
      error.hidden = false;
    }
  }
}

const mine = (e) => e.run_id === run.id;
realtime.subscribe([`pipeline_run.${run.id}`]);
realtime.on("pipeline_step", (e) => {
  if (!mine(e)) return;
  if (status === "queued") setStatus("running");
  setStep(e);
  appendLog(e);
});
realtime.on("pipeline_status", (e) => {
  if (!mine(e)) return;
  setStatus(e.status);
  if (!ACTIVE.has(e.status)) refresh();
});
realtime.on("pipeline_progress", (e) => {
  if (!mine(e)) return;
  if (status === "queued") setStatus("running");
  setProgress($("run-progress").querySelector(".progress"), e.progress, e.status);
  setText($("run-step"), `Step ${e.step_index + 1} of ${e.total_steps}: ${humanize(e.current_step)}`);
});
realtime.on("pipeline_completed", (e) => {
  if (!mine(e)) return;
  setStatus(e.status, e.message);
  if (e.status === "succeeded") setProgress($("run-progress").querySelector(".progress"), 100, "succeeded");
  refresh();
});
realtime.on("pipeline_failed", (e) => {
  if (!mine(e)) return;
  setStatus("failed");
  showError(e.failed_step, e.error);
  refresh();
});
realtime.onResync(() => refresh());

// --- buttons ----------------------------------------------------------------------------------------

$("cancel-run")?.addEventListener("click", async () => {
  const button = $("cancel-run");
  button.disabled = true;
  const { ok, body } = await postJSON(data.api.cancel);
  if (!ok) {
    toast({ kind: "error", title: "Could not cancel", message: body?.detail || "The run could not be cancelled." });
    button.disabled = false;
    return;
  }
  setText(button.querySelector("span"), "Cancelling…");
  if (!ACTIVE.has(body.status)) refresh();
});

$("retry-run")?.addEventListener("click", async () => {
  const button = $("retry-run");
  button.disabled = true;
  const { ok, body } = await postJSON(data.api.retry);
  if (!ok) {
    toast({ kind: "error", title: "Could not retry", message: body?.detail || "The run could not be retried." });
    button.disabled = false;
    return;
  }
  location.assign(body.url);
});

// A page rendered while the run was active may have missed events between render and subscribe.
if (ACTIVE.has(status)) setTimeout(refresh, 1500);
