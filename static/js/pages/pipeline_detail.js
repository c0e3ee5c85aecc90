// One pipeline: the Run button, the editor (PUT to the API), Delete, and the run history kept live
// from pipeline_status / pipeline_progress / pipeline_completed / pipeline_failed.

import { realtime } from "../realtime.js";
import { liveFragments, postJSON, setText, toast } from "../ui.js";
import { createEditor } from "./pipeline_editor.js";

const data = JSON.parse(document.getElementById("pipeline-data").textContent);
const pipelineId = data.pipeline.id;
const $ = (id) => document.getElementById(id);
const tbody = $("runs-table").querySelector("tbody");
const ACTIVE = new Set(["queued", "running"]);

// --- the run history --------------------------------------------------------------------------------
// Rows are rendered by the server (pipelines:run-row, templates/pipelines/_run_row.html) and morphed in.

function runRow(runId) {
  return tbody.querySelector(`tr[data-run-id="${runId}"]`);
}

function tickDuration(tr) {
  const cell = tr.querySelector("[data-run-duration]");
  if (tr.dataset.status === "running" && cell?.dataset.started && !cell.dataset.finished) {
    setText(cell, `${((Date.now() - Date.parse(cell.dataset.started)) / 1000).toFixed(1)} s`);
  }
}

const runs = liveFragments({
  url: (id) => data.runRowUrl.replace(/\/0\/row\/$/, `/${id}/row/`),
  find: runRow,
  place: (tr) => {
    tbody.prepend(tr);
    $("runs-table").closest(".table-wrap").hidden = false;
    $("runs-empty").hidden = true;
  },
  onUpdate: tickDuration,
});

// Durations of running runs tick locally between events.
setInterval(() => tbody.querySelectorAll("tr[data-status='running']").forEach(tickDuration), 1000);

const mine = (e) => e.pipeline_id === pipelineId;
realtime.subscribe([`pipeline.${pipelineId}`]);
for (const type of ["pipeline_status", "pipeline_progress", "pipeline_completed", "pipeline_failed"]) {
  realtime.on(type, (e) => mine(e) && runs.refresh(e.run_id));
}
realtime.on("pipeline_updated", (e) => {
  if (mine(e)) toast({ kind: "info", title: "Pipeline changed", message: "Reload to see its new definition." });
});
realtime.on("pipeline_deleted", (e) => {
  if (mine(e)) location.assign(data.api.index);
});
realtime.onResync(() => {
  for (const tr of tbody.querySelectorAll("tr")) if (ACTIVE.has(tr.dataset.status)) runs.refresh(tr.dataset.runId);
});

// --- buttons --------------------------------------------------------------------------------------------

$("run-pipeline")?.addEventListener("click", async () => {
  const button = $("run-pipeline");
  button.disabled = true;
  const { ok, body } = await postJSON(data.api.run);
  button.disabled = false;
  if (!ok) {
    toast({ kind: "error", title: "Could not start the run", message: body?.detail || "The run could not be started." });
    return;
  }
  runs.refresh(body.id);
  toast({ kind: "success", title: `Run #${body.id} queued`, message: "Open it to follow each step." });
});

$("delete-pipeline")?.addEventListener("click", async () => {
  if (!window.confirm(`Delete the pipeline "${data.pipeline.name}" and its run history?`)) return;
  const { ok, status, body } = await postJSON(data.api.pipeline, undefined, { method: "DELETE" });
  if (ok) return location.assign(data.api.index);
  toast({ kind: "error", title: "Could not delete", message: body?.detail || `HTTP ${status}` });
});

// Editing is on the page only for those who may edit (the pipeline's creator, or a maintainer).
const editCard = $("edit-card");
const editButton = $("edit-pipeline");
function toggleEditor(open) {
  editCard.hidden = !open;
  editButton.setAttribute("aria-expanded", String(open));
  if (open) editCard.scrollIntoView({ block: "start", behavior: "smooth" });
}
if (editCard && editButton) {
  editButton.addEventListener("click", () => toggleEditor(editCard.hidden));
  editCard.querySelector("[data-editor-cancel]")?.addEventListener("click", () => toggleEditor(false));
  createEditor(editCard.querySelector("form"), {
    config: data.editor.config,
    datasets: data.editor.datasets,
    pipeline: data.editor.pipeline,
    onSaved: () => location.reload(),
  });
}
