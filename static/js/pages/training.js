// Training page: the form's target-column select follows the chosen dataset, and the jobs table
// follows training events live (rows for jobs started elsewhere are added from the API).

import { realtime } from "../realtime.js";
import { postJSON, setProgress, setStatusBadge, setText, toast } from "../ui.js";

const data = JSON.parse(document.getElementById("training-data").textContent);
const rows = document.getElementById("job-rows");
const template = document.getElementById("job-row-template");
const ACTIVE = new Set(["queued", "running"]);

// --- the form -------------------------------------------------------------------------------------

const datasetSelect = document.getElementById("id_dataset");
const targetSelect = document.getElementById("id_target_column");

function fillTargets(keep) {
  if (!datasetSelect || !targetSelect) return;
  const dataset = data.datasets.find((d) => String(d.id) === datasetSelect.value);
  const columns = dataset ? dataset.columns : [];
  const wanted = keep && columns.includes(keep) ? keep : dataset?.target_column || columns[columns.length - 1] || "";
  targetSelect.replaceChildren(...columns.map((c) => new Option(c, c, false, c === wanted)));
}

if (datasetSelect) {
  fillTargets(data.selected.target_column || targetSelect.value);
  datasetSelect.addEventListener("change", () => fillTargets(null));
  document.getElementById("training-form").addEventListener("submit", (e) => {
    e.submitter?.setAttribute("disabled", "");
  });
}

// --- the jobs table ---------------------------------------------------------------------------------

function rowFor(jobId) {
  return rows.querySelector(`tr[data-job-id="${jobId}"]`);
}

function updateCount() {
  const n = rows.rows.length;
  document.getElementById("jobs-empty").hidden = n > 0;
  setText(document.getElementById("job-count"), `${n} recent`);
}

function setStatus(row, status) {
  row.dataset.status = status;
  setStatusBadge(row.querySelector(".badge"), status);
  const bar = row.querySelector(".progress");
  bar.dataset.status = status;
  const cancel = row.querySelector('[data-action="cancel"]');
  if (cancel && !ACTIVE.has(status)) cancel.remove();
}

function fmt(value, digits = 3) {
  return value == null || Number.isNaN(Number(value)) ? "—" : Number(value).toFixed(digits);
}

function rowFromJob(job) {
  const row = template.content.firstElementChild.cloneNode(true);
  row.dataset.jobId = String(job.id);
  const link = row.querySelector(".job-link");
  link.href = job.url;
  link.textContent = `#${job.id} ${job.name}`;
  const algorithm = data.algorithms[job.algorithm] || job.algorithm;
  setText(row.querySelector(".job-meta"), [job.dataset_name, algorithm, job.task].filter(Boolean).join(" · "));
  setText(row.querySelector(".job-epoch"), `Epoch ${job.current_epoch} / ${job.total_epochs}`);
  setText(row.querySelector(".job-score"), fmt(job.validation_score ?? job.live_accuracy));
  setProgress(row.querySelector(".progress"), job.progress, job.status);
  setStatus(row, job.status);
  return row;
}

const fetching = new Map(); // job id → promise of its row

async function ensureRow(jobId) {
  const existing = rowFor(jobId);
  if (existing) return existing;
  if (!fetching.has(jobId)) {
    fetching.set(
      jobId,
      fetch(`${data.api.jobs}${jobId}/`, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : null))
        .then((job) => {
          if (!job) return null;
          const row = rowFor(jobId) || rowFromJob(job);
          if (!row.isConnected) {
            // Newest first: after any row with a larger id.
            const after = [...rows.rows].find((r) => Number(r.dataset.jobId) < job.id);
            rows.insertBefore(row, after || null);
            row.classList.add("is-new");
            updateCount();
          }
          return row;
        })
        .finally(() => fetching.delete(jobId)),
    );
  }
  return fetching.get(jobId);
}

realtime.on("training_started", async (e) => {
  const row = await ensureRow(e.job_id);
  if (row && row.dataset.status === "queued") setStatus(row, "running");
});

realtime.on("training_progress", async (e) => {
  const row = await ensureRow(e.job_id);
  if (!row || !ACTIVE.has(row.dataset.status)) return;
  if (row.dataset.status !== "running") setStatus(row, "running");
  setProgress(row.querySelector(".progress"), e.progress, "running");
  setText(row.querySelector(".job-epoch"), `Epoch ${e.current_epoch} / ${e.total_epochs}`);
  if (e.live_accuracy != null) setText(row.querySelector(".job-score"), fmt(e.live_accuracy));
});

realtime.on("training_completed", async (e) => {
  const row = await ensureRow(e.job_id);
  if (!row) return;
  setStatus(row, "succeeded");
  setProgress(row.querySelector(".progress"), 100, "succeeded");
  setText(row.querySelector(".job-epoch"), `Epoch ${e.total_epochs} / ${e.total_epochs}`);
  setText(row.querySelector(".job-score"), fmt(e.validation_score));
  const actions = row.querySelector(".job-actions");
  const link = document.createElement("a");
  link.className = "btn btn--ghost btn--sm";
  link.href = `/training/models/#model-${e.model_id}`;
  link.textContent = "Model";
  actions.replaceChildren(link);
});

realtime.on("training_failed", async (e) => {
  const row = await ensureRow(e.job_id);
  if (!row) return;
  const status = e.error_code === "CANCELLED" ? "cancelled" : "failed";
  setStatus(row, status);
  setProgress(row.querySelector(".progress"), e.progress_when_failed, status);
  row.title = e.error;
});

// Cancel buttons (one handler for every row, present and future).
rows.addEventListener("click", async (event) => {
  const button = event.target.closest('[data-action="cancel"]');
  if (!button) return;
  const row = button.closest("tr");
  button.disabled = true;
  const { ok, body } = await postJSON(`${data.api.jobs}${row.dataset.jobId}/cancel/`);
  if (!ok) {
    toast({ kind: "error", title: "Could not cancel", message: body?.detail || "The job could not be cancelled." });
    button.disabled = false;
    return;
  }
  setText(button, "Cancelling…");
  if (body.status === "cancelled") setStatus(row, "cancelled");
});

// After a replay gap, the table is reloaded with the page (it is server-rendered).
realtime.onResync(() => location.reload());
updateCount();
