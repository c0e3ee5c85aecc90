// One pipeline: the Run button, the editor (PUT to the API), Delete, and the run history kept live
// from pipeline_status / pipeline_progress / pipeline_completed / pipeline_failed.

import { realtime } from "../realtime.js";
import { csrfToken, humanize, postJSON, setProgress, setStatusBadge, setText, toast } from "../ui.js";
import { createEditor } from "./pipeline_editor.js";

const data = JSON.parse(document.getElementById("pipeline-data").textContent);
const pipelineId = data.pipeline.id;
const $ = (id) => document.getElementById(id);
const tbody = $("runs-table").querySelector("tbody");
const ACTIVE = new Set(["queued", "running"]);

// --- the run history --------------------------------------------------------------------------------

function runRow(runId) {
  return tbody.querySelector(`tr[data-run-id="${runId}"]`);
}

function newRow(run) {
  const tr = document.createElement("tr");
  tr.dataset.runId = String(run.id);
  tr.innerHTML =
    '<td><a class="run-link"></a></td><td data-run-status><span class="badge"></span><span class="run-message" data-run-message></span></td>' +
    '<td class="runs-table__progress" data-run-progress><div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-label="Run progress">' +
    '<span class="progress__track"><span class="progress__fill" style="width:0%"></span></span><span class="progress__value">0%</span></div></td>' +
    '<td data-run-trigger></td><td class="num"><time></time></td><td class="num" data-run-duration>—</td>';
  const link = tr.querySelector("a");
  link.href = `/pipelines/runs/${run.id}/`;
  link.textContent = `#${run.id}`;
  setText(tr.querySelector("[data-run-trigger]"), humanize(run.trigger || "manual") + (run.retry_of ? ` of #${run.retry_of}` : ""));
  const created = new Date(run.created_at || Date.now());
  const time = tr.querySelector("time");
  time.dateTime = created.toISOString();
  time.textContent = created.toLocaleString();
  tbody.prepend(tr);
  $("runs-table").closest(".table-wrap").hidden = false;
  $("runs-empty").hidden = true;
  return tr;
}

function updateRow(run) {
  const tr = runRow(run.id) || newRow(run);
  tr.dataset.status = run.status;
  setStatusBadge(tr.querySelector("[data-run-status] .badge"), run.status);
  if (run.progress != null) setProgress(tr.querySelector(".progress"), run.progress, run.status);
  else tr.querySelector(".progress").dataset.status = run.status;
  if (run.message != null) {
    setText(tr.querySelector("[data-run-message]"), run.message);
    tr.querySelector("[data-run-message]").title = run.message;
  }
  const cell = tr.querySelector("[data-run-duration]");
  if (run.started_at !== undefined) cell.dataset.started = run.started_at || "";
  if (run.finished_at !== undefined) cell.dataset.finished = run.finished_at || "";
  if (run.duration != null) setText(cell, `${Number(run.duration).toFixed(1)} s`);
}

// Durations of running runs tick locally between events.
setInterval(() => {
  for (const tr of tbody.querySelectorAll("tr[data-status='running']")) {
    const cell = tr.querySelector("[data-run-duration]");
    if (cell.dataset.started && !cell.dataset.finished) {
      setText(cell, `${((Date.now() - Date.parse(cell.dataset.started)) / 1000).toFixed(1)} s`);
    }
  }
}, 1000);

async function refreshRun(runId) {
  const response = await fetch(`/api/pipeline-runs/${runId}/`, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.ok) updateRow(await response.json());
}

const mine = (e) => e.pipeline_id === pipelineId;
realtime.subscribe([`pipeline.${pipelineId}`]);
realtime.on("pipeline_status", (e) => {
  if (!mine(e)) return;
  const d = e.data || {};
  const tr = runRow(e.run_id);
  if (!tr) updateRow({ id: e.run_id, status: e.status, trigger: d.trigger, retry_of: d.retry_of, progress: d.progress, created_at: e.timestamp });
  else updateRow({ id: e.run_id, status: e.status, progress: ACTIVE.has(e.status) ? d.progress : undefined });
  if (e.status === "running" && tr) tr.querySelector("[data-run-duration]").dataset.started ||= e.timestamp;
  if (e.status === "running" && !tr) runRow(e.run_id).querySelector("[data-run-duration]").dataset.started = e.timestamp;
  if (!ACTIVE.has(e.status)) refreshRun(e.run_id);
});
realtime.on("pipeline_progress", (e) => {
  if (!mine(e)) return;
  const tr = runRow(e.run_id);
  if (!tr) return void refreshRun(e.run_id);
  if (tr.dataset.status === "queued") updateRow({ id: e.run_id, status: "running" });
  setProgress(tr.querySelector(".progress"), e.progress, e.status);
  setText(tr.querySelector("[data-run-message]"), `Step ${e.step_index + 1} of ${e.total_steps}: ${humanize(e.current_step)}`);
});
for (const type of ["pipeline_completed", "pipeline_failed"]) {
  realtime.on(type, (e) => mine(e) && refreshRun(e.run_id));
}
realtime.on("pipeline_updated", (e) => {
  if (mine(e)) toast({ kind: "info", title: "Pipeline changed", message: "Reload to see its new definition." });
});
realtime.on("pipeline_deleted", (e) => {
  if (mine(e)) location.assign(data.api.index);
});
realtime.onResync(() => {
  for (const tr of tbody.querySelectorAll("tr")) if (ACTIVE.has(tr.dataset.status)) refreshRun(tr.dataset.runId);
});

// --- buttons --------------------------------------------------------------------------------------------

$("run-pipeline").addEventListener("click", async () => {
  const button = $("run-pipeline");
  button.disabled = true;
  const { ok, body } = await postJSON(data.api.run);
  button.disabled = false;
  if (!ok) {
    toast({ kind: "error", title: "Could not start the run", message: body?.detail || "The run could not be started." });
    return;
  }
  updateRow(body);
  toast({ kind: "success", title: `Run #${body.id} queued`, message: "Open it to follow each step." });
});

$("delete-pipeline").addEventListener("click", async () => {
  if (!window.confirm(`Delete the pipeline "${data.pipeline.name}" and its run history?`)) return;
  const response = await fetch(data.api.pipeline, {
    method: "DELETE",
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
  });
  if (response.ok) return location.assign(data.api.index);
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* no body */
  }
  toast({ kind: "error", title: "Could not delete", message: body?.detail || `HTTP ${response.status}` });
});

const editCard = $("edit-card");
const editButton = $("edit-pipeline");
function toggleEditor(open) {
  editCard.hidden = !open;
  editButton.setAttribute("aria-expanded", String(open));
  if (open) editCard.scrollIntoView({ block: "start", behavior: "smooth" });
}
editButton.addEventListener("click", () => toggleEditor(editCard.hidden));
editCard.querySelector("[data-editor-cancel]")?.addEventListener("click", () => toggleEditor(false));
createEditor(editCard.querySelector("form"), {
  config: data.editor.config,
  datasets: data.editor.datasets,
  pipeline: data.editor.pipeline,
  onSaved: () => location.reload(),
});
