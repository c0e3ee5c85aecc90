// The Pipelines page (the current project's): each pipeline's last run follows pipeline_status /
// completed / failed on the project's topic; a Run button per row; the step editor creates new pipelines through the API.

import { realtime } from "../realtime.js";
import { postJSON, setStatusBadge, toast } from "../ui.js";
import { createEditor } from "./pipeline_editor.js";

const data = JSON.parse(document.getElementById("pipelines-data").textContent);
const table = document.getElementById("pipelines-table");

function row(pipelineId) {
  return table?.querySelector(`tr[data-pipeline-id="${pipelineId}"]`) || null;
}

function showLastRun(pipelineId, runId, status) {
  const tr = row(pipelineId);
  if (!tr) return;
  const cell = tr.querySelector("[data-last-run]");
  let link = cell.querySelector("a.run-link");
  if (!link || link.dataset.runId !== String(runId)) {
    link = document.createElement("a");
    link.className = "run-link";
    link.dataset.runId = String(runId);
    link.href = `/pipelines/runs/${runId}/`;
    const badge = document.createElement("span");
    badge.className = "badge";
    const id = document.createElement("span");
    id.className = "muted";
    id.textContent = `#${runId}`;
    link.append(badge, id);
    cell.replaceChildren(link);
  }
  setStatusBadge(link.querySelector(".badge"), status);
}

// The server-rendered links carry no run id attribute: read it from their href once.
for (const link of document.querySelectorAll("[data-last-run] a.run-link")) {
  link.dataset.runId = link.getAttribute("href").match(/runs\/(\d+)/)?.[1] || "";
}

realtime.on("pipeline_status", (e) => showLastRun(e.pipeline_id, e.run_id, e.status));
realtime.on("pipeline_completed", (e) => showLastRun(e.pipeline_id, e.run_id, e.status));
realtime.on("pipeline_failed", (e) => showLastRun(e.pipeline_id, e.run_id, "failed"));
realtime.on("pipeline_deleted", (e) => {
  row(e.pipeline_id)?.remove();
});
realtime.on("pipeline_created", (e) => {
  if (row(e.pipeline_id)) return;
  toast({ kind: "info", title: "Pipeline created", message: `${e.name} — reload to see it in the list.` });
});
realtime.onResync(() => location.reload());

table?.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-run-pipeline]");
  if (!button) return;
  button.disabled = true;
  const { ok, body } = await postJSON(`/api/pipelines/${button.dataset.runPipeline}/run/`);
  button.disabled = false;
  if (!ok) {
    toast({ kind: "error", title: "Could not start the run", message: body?.detail || "The run could not be started." });
    return;
  }
  showLastRun(body.pipeline, body.id, body.status);
  toast({ kind: "success", title: `Run #${body.id} queued`, message: body.pipeline_name });
});

const form = document.getElementById("pipeline-editor");
if (form) {
  createEditor(form, {
    config: data.editor.config,
    datasets: data.editor.datasets,
    pipeline: null,
    project: data.editor.project,
    onSaved: (body) => location.assign(body.url),
  });
}
