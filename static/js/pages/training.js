// Training page: the form's target-column select follows the chosen dataset, and the jobs table
// follows training events live.

import { realtime } from "../realtime.js";
import { insertNewestFirst, liveFragments, postJSON, setText, toast } from "../ui.js";

const data = JSON.parse(document.getElementById("training-data").textContent);
const rows = document.getElementById("job-rows");

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

// Rows are rendered by the server (training:job-row, templates/training/_job_row.html) and morphed in;
// a job started elsewhere gets its row, newest first.
const jobs = liveFragments({
  url: (jobId) => data.rowUrl.replace(/\/0\/row\/$/, `/${jobId}/row/`),
  find: rowFor,
  place: (row) => {
    insertNewestFirst(rows, row, "jobId");
    updateCount();
  },
});

for (const type of ["training_started", "training_progress", "training_completed", "training_failed"]) {
  realtime.on(type, (e) => jobs.refresh(e.job_id));
}

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
  jobs.refresh(row.dataset.jobId);
});

// After a replay gap, the table is reloaded with the page (it is server-rendered).
realtime.onResync(() => location.reload());
updateCount();
