// One dataset: actions (edit, re-profile, delete), per-column histograms (Chart.js, loaded before this
// module as a classic script), the processing-jobs form, and live updates from this dataset's topic.
// The server renders every region; when an event says one changed, the page fetches itself and swaps
// that region in by id (the whole page when the dataset's status changes), morphed by ui.js.

import { realtime } from "../realtime.js";
import { insertNewestFirst, liveFragments, morph, postJSON, setProgress, setStatusBadge, setText, toast } from "../ui.js";

const $ = (id) => document.getElementById(id);
const BUSY = new Set(["validating", "profiling"]);
const ACTIVE_JOBS = new Set(["queued", "running"]);
let data = readData();

function readData() {
  return JSON.parse($("dataset-data").textContent);
}

function page() {
  return $("dataset-page");
}

// --- fetch helpers --------------------------------------------------------------------------------------

function send(method, url, body) {
  return postJSON(url, body, { method });
}

/** Problem details → {title, lines}: `detail`, then each entry of `errors` (field: message). */
function problem(body, status) {
  const title = body?.detail || body?.title || `The server answered ${status}.`;
  const lines = [];
  const walk = (value, prefix) => {
    if (Array.isArray(value)) value.forEach((v) => walk(v, prefix));
    else if (value && typeof value === "object") Object.entries(value).forEach(([k, v]) => walk(v, ["non_field_errors", "options"].includes(k) ? prefix : k));
    else if (value != null) lines.push(prefix ? `${prefix}: ${value}` : String(value));
  };
  if (body?.errors) walk(body.errors, "");
  return { title, lines: lines.length > 1 ? lines : [] };
}

function showProblem(box, { title, lines }) {
  if (!box) return;
  const list = lines.length ? `<ul>${lines.map((l) => `<li>${escapeHtml(l)}</li>`).join("")}</ul>` : "";
  box.innerHTML = `<p>${escapeHtml(title)}</p>${list}`;
  box.hidden = false;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// --- regions: re-render parts of the page from the server -------------------------------------------------

let refreshing = null;
let pendingIds = new Set();

/** Fetch this page and swap in the elements with these ids ("dataset-page" = everything). */
function refresh(ids) {
  ids.forEach((id) => pendingIds.add(id));
  if (refreshing) return refreshing;
  refreshing = (async () => {
    await new Promise((r) => setTimeout(r, 120)); // gather a burst of events into one fetch
    while (pendingIds.size) {
      const wanted = pendingIds.has("dataset-page") ? ["dataset-page"] : [...pendingIds];
      pendingIds = new Set();
      try {
        const response = await fetch(location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (response.status === 404) {
          markDeleted();
          break;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const id of wanted) swap(id, doc);
        if (wanted.includes("dataset-page")) {
          data = readData();
          document.title = doc.title;
          const crumb = doc.querySelector(".crumb__here");
          if (crumb) document.querySelector(".crumb__here")?.replaceChildren(...crumb.childNodes);
        }
        mount();
      } catch (err) {
        console.warn("could not refresh the page", err);
      }
    }
    refreshing = null;
  })();
  return refreshing;
}

function swap(id, doc) {
  const current = $(id);
  const fresh = doc.getElementById(id);
  if (!current || !fresh) return;
  // Charts in the region are drawn again on its new canvases (mount), after the morph.
  charts = charts.filter((c) => {
    if (!current.contains(c.canvas)) return true;
    c.destroy();
    return false;
  });
  morph(current, document.importNode(fresh, true));
}

function markDeleted() {
  const banner = $("dataset-deleted");
  if (banner) banner.hidden = false;
  setStatusBadge($("dataset-status")?.querySelector(".badge"), "unknown", "Deleted");
  for (const el of page().querySelectorAll("[data-action], #job-form button, #job-form input, #job-form select")) el.disabled = true;
}

// --- charts -----------------------------------------------------------------------------------------------

let charts = [];
const COLORS = { histogram: "#6366f1", top_values: "#15b79e" };

function truncate(text, n) {
  const s = String(text);
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function drawCharts() {
  // Only canvases without a chart yet: a region swap elsewhere leaves the charts alone.
  charts = charts.filter((c) => {
    if (document.contains(c.canvas)) return true;
    c.destroy();
    return false;
  });
  const Chart = window.Chart;
  if (!Chart) return;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#667085";
  for (const spec of data.charts || []) {
    const canvas = page().querySelector(`canvas[data-chart-index="${spec.index}"]`);
    if (!canvas || Chart.getChart(canvas)) continue;
    const histogram = spec.kind === "histogram";
    const total = spec.counts.reduce((a, b) => a + b, 0) || 1;
    charts.push(
      new Chart(canvas, {
        type: "bar",
        data: {
          labels: spec.labels,
          datasets: [
            {
              data: spec.counts,
              backgroundColor: histogram ? "rgba(99, 102, 241, 0.78)" : "rgba(21, 183, 158, 0.78)",
              hoverBackgroundColor: COLORS[spec.kind],
              borderRadius: histogram ? 2 : 3,
              barPercentage: histogram ? 1 : 0.8,
              categoryPercentage: histogram ? 0.94 : 0.85,
            },
          ],
        },
        options: {
          indexAxis: histogram ? "x" : "y",
          responsive: true,
          maintainAspectRatio: false,
          animation: { duration: 300 },
          plugins: {
            legend: { display: false },
            tooltip: {
              displayColors: false,
              callbacks: {
                title: (items) => (histogram ? spec.labels[items[0].dataIndex] : truncate(spec.labels[items[0].dataIndex], 60)),
                label: (item) => {
                  const n = spec.counts[item.dataIndex];
                  return `${n.toLocaleString()} row${n === 1 ? "" : "s"} (${((100 * n) / total).toFixed(1)}%)`;
                },
              },
            },
          },
          scales: histogram
            ? {
                x: {
                  grid: { display: false },
                  ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 5, font: { size: 10 }, callback: (v) => truncate(String(spec.labels[v]).split(" – ")[0], 8) },
                },
                y: { beginAtZero: true, border: { display: false }, grid: { color: "#eef0f4" }, ticks: { maxTicksLimit: 4, precision: 0, font: { size: 10 } } },
              }
            : {
                x: { beginAtZero: true, border: { display: false }, grid: { color: "#eef0f4" }, ticks: { maxTicksLimit: 4, precision: 0, font: { size: 10 } } },
                y: { grid: { display: false }, ticks: { autoSkip: false, font: { size: 10.5 }, callback: (v) => truncate(spec.labels[v], 14) } },
              },
        },
      }),
    );
  }
}

// --- the processing-jobs form -------------------------------------------------------------------------------

function jobForm() {
  return $("job-form");
}

function syncJobForm() {
  const form = jobForm();
  if (!form) return;
  const operation = form.elements.operation.value;
  for (const section of form.querySelectorAll("[data-operation]")) section.hidden = section.dataset.operation !== operation;
  const missing = form.elements.missing?.value;
  const fill = form.querySelector('[data-when-missing="fill_constant"]');
  if (fill) fill.hidden = missing !== "fill_constant";
  const stratify = form.elements.stratify;
  const shuffle = form.elements.shuffle;
  if (stratify && shuffle && stratify.checked) shuffle.checked = true; // a stratified split shuffles
}

function checkedValues(form, name) {
  return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((el) => el.value);
}

function number(value) {
  const text = String(value).trim();
  if (text === "") return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : text; // the server names what is wrong with a non-number
}

function jobRequest(form) {
  const f = form.elements;
  const operation = f.operation.value;
  const options = {};
  if (operation === "clean") {
    options.drop_duplicates = f.drop_duplicates.checked;
    options.missing = f.missing.value;
    if (options.missing === "fill_constant") {
      const raw = f.fill_value.value;
      const n = Number(raw);
      options.fill_value = raw.trim() !== "" && Number.isFinite(n) ? n : raw;
    }
    const columns = checkedValues(form, "clean_columns");
    if (columns.length) options.columns = columns;
  } else if (operation === "split") {
    const ratio = number(f.test_ratio.value);
    if (ratio !== undefined) options.test_ratio = ratio;
    const seed = number(f.random_state.value);
    if (seed !== undefined) options.random_state = seed;
    options.shuffle = f.shuffle.checked;
    options.stratify = Boolean(f.stratify?.checked);
  } else {
    options.method = f.method.value;
    const columns = checkedValues(form, "scale_columns");
    if (columns.length) options.columns = columns;
  }
  return { operation, options };
}

async function submitJob(form) {
  const error = $("job-form-error");
  const button = $("job-submit");
  error.hidden = true;
  button.disabled = true;
  try {
    const { ok, status, body } = await postJSON(data.api.jobs, jobRequest(form));
    if (!ok) {
      showProblem(error, problem(body, status));
      return;
    }
    await ensureJobRow(body.id, { highlight: true });
  } catch (err) {
    showProblem(error, { title: `Could not start the job: ${err.message || err}`, lines: [] });
  } finally {
    button.disabled = false;
  }
}

// --- the jobs table -----------------------------------------------------------------------------------------

function jobRow(id) {
  return $("job-rows")?.querySelector(`tr[data-job-id="${id}"]`);
}

function updateJobCount() {
  const tbody = $("job-rows");
  if (!tbody) return;
  const n = tbody.rows.length;
  setText($("jobs-count"), `${n} job${n === 1 ? "" : "s"}`);
  const empty = $("jobs-empty");
  if (empty) empty.hidden = n > 0;
}

// Job rows are rendered by the server (datasets:job-row, templates/datasets/_job_row.html) and morphed in.
const jobRows = liveFragments({
  url: (id) => data.jobRowUrl.replace(/\/0\/row\/$/, `/${id}/row/`),
  find: jobRow,
  place: (row) => {
    const tbody = $("job-rows");
    if (tbody) insertNewestFirst(tbody, row, "jobId");
  },
  onUpdate: updateJobCount,
});
const ensureJobRow = jobRows.refresh;

function applyJobProgress(event) {
  const row = jobRow(event.job_id);
  if (!row) {
    ensureJobRow(event.job_id);
    return;
  }
  row.dataset.status = event.status;
  setStatusBadge(row.querySelector(".job-status .badge"), event.status);
  setProgress(row.querySelector(".progress"), event.progress, event.status);
  const step = ACTIVE_JOBS.has(event.status) && event.current_step !== event.status ? event.current_step || "" : "";
  setText(row.querySelector(".job-step"), step.charAt(0).toUpperCase() + step.slice(1));
  if (!ACTIVE_JOBS.has(event.status)) row.querySelector('[data-action="cancel-job"]')?.remove();
}

realtime.on("job_progress", (event) => {
  if (event.dataset_id === data.id) applyJobProgress(event);
});

realtime.on("job_completed", (event) => {
  if (event.dataset_id !== data.id) return;
  const row = jobRow(event.job_id);
  if (row) {
    row.dataset.status = event.status;
    setStatusBadge(row.querySelector(".job-status .badge"), event.status);
    const bar = row.querySelector(".progress");
    setProgress(bar, event.status === "succeeded" ? 100 : Number(bar?.getAttribute("aria-valuenow")) || 0, event.status);
    setText(row.querySelector(".job-step"), event.duration != null ? `in ${Number(event.duration).toFixed(1)} s` : "");
    row.querySelector('[data-action="cancel-job"]')?.remove();
  }
  ensureJobRow(event.job_id, { highlight: true }); // output links, result, error, duration
  if (event.status === "succeeded") refresh(["dataset-lineage"]);
});

// --- this dataset's own events --------------------------------------------------------------------------------

function setBusyStep(status) {
  setText($("busy-label"), status === "profiling" ? "Profiling" : "Validating");
  const order = ["uploaded", "validating", "profiling", "ready"];
  const at = order.indexOf(status);
  for (const item of page().querySelectorAll("#busy-steps [data-step]")) {
    const i = order.indexOf(item.dataset.step);
    item.dataset.state = i < at ? "done" : i === at ? "current" : "pending";
  }
}

function onDatasetEvent(event) {
  if (event.dataset_id !== data.id) {
    // A dataset derived from this one changed: its badge in the lineage card.
    const child = $("lineage-children")?.querySelector(`[data-dataset-id="${event.dataset_id}"]`);
    if (child) refresh(["dataset-lineage"]);
    return;
  }
  const shown = page().dataset.status;
  const status = event.status;
  if (status && status !== shown) {
    if (BUSY.has(shown) && BUSY.has(status)) {
      // validating → profiling: the indicator moves on; the page stays.
      page().dataset.status = status;
      setStatusBadge($("dataset-status")?.querySelector(".badge"), status);
      setBusyStep(status);
    } else {
      page().dataset.status = status; // the page being fetched shows it; later events need not refetch
      refresh(["dataset-page"]);
    }
  } else if (event.type === "dataset_updated") {
    refresh(["dataset-header"]); // a new name, target or description
  } else if (event.type === "dataset_processed") {
    refresh(["dataset-page"]);
  }
}

realtime.on("dataset_updated", onDatasetEvent);
realtime.on("dataset_processed", onDatasetEvent);
realtime.on("dataset_deleted", (event) => {
  if (event.dataset_id === data.id) markDeleted();
  else if (page().querySelector(`#dataset-lineage a[href$="/${event.dataset_id}/"]`)) refresh(["dataset-lineage"]);
});

realtime.subscribe([`dataset.${data.id}`]);
realtime.onResync(() => refresh(["dataset-page"]));

// --- actions (delegated: regions are replaced, the listeners stay) ----------------------------------------------

async function reprofile(button) {
  button.disabled = true;
  const { ok, status, body } = await send("POST", data.api.reprofile);
  if (!ok) {
    button.disabled = false;
    toast({ kind: "error", title: "Could not re-profile", message: problem(body, status).title });
    return;
  }
  toast({ kind: "info", title: "Re-profiling", message: `${data.name} is being validated and profiled again.` });
  refresh(["dataset-page"]);
}

function openDialog(id) {
  const dialog = $(id);
  if (!dialog) return;
  dialog.querySelector(".alert")?.setAttribute("hidden", "");
  dialog.showModal();
}

async function saveEdit(form) {
  const error = $("edit-error");
  error.hidden = true;
  const payload = {
    name: form.elements.name.value.trim(),
    target_column: form.elements.target_column.value.trim(),
    description: form.elements.description.value.trim(),
  };
  if (!payload.name) {
    showProblem(error, { title: "A dataset needs a name.", lines: [] });
    return;
  }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const { ok, status, body } = await send("PATCH", data.api.dataset, payload);
    if (!ok) {
      showProblem(error, problem(body, status));
      return;
    }
    $("edit-dialog").close();
    data.name = body.name;
    toast({ kind: "success", title: "Saved", message: `${body.name} was updated.` });
    refresh(["dataset-page"]);
  } finally {
    button.disabled = false;
  }
}

async function confirmDelete(form) {
  const error = $("delete-error");
  error.hidden = true;
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const { ok, status, body } = await send("DELETE", data.api.dataset);
    if (!ok && status !== 404) {
      showProblem(error, problem(body, status));
      return;
    }
    try {
      sessionStorage.setItem("datasets:flash", JSON.stringify({ kind: "success", title: "Dataset deleted", message: `${data.name} was deleted.` }));
    } catch {
      /* storage disabled */
    }
    location.assign(data.indexUrl);
  } finally {
    button.disabled = false;
  }
}

async function cancelJob(button) {
  button.disabled = true;
  setText(button, "Cancelling…");
  const id = button.dataset.jobId;
  const { ok, status, body } = await postJSON(data.api.cancel.replace(/\/0\/cancel\/$/, `/${id}/cancel/`));
  if (!ok) {
    toast({ kind: "error", title: "Could not cancel the job", message: problem(body, status).title });
    ensureJobRow(Number(id));
  }
}

document.addEventListener("click", (e) => {
  const button = e.target.closest("[data-action]");
  if (!button || !page().contains(button) || button.disabled) return;
  const action = button.dataset.action;
  if (action === "edit") openDialog("edit-dialog");
  else if (action === "delete") openDialog("delete-dialog");
  else if (action === "reprofile") reprofile(button);
  else if (action === "cancel-job") cancelJob(button);
  else if (action === "close-dialog") button.closest("dialog")?.close();
});

document.addEventListener("submit", (e) => {
  const form = e.target;
  if (form.id === "job-form") {
    e.preventDefault();
    submitJob(form);
  } else if (form.id === "edit-form") {
    e.preventDefault();
    saveEdit(form);
  } else if (form.id === "delete-form") {
    e.preventDefault();
    confirmDelete(form);
  }
});

document.addEventListener("change", (e) => {
  if (e.target.closest("#job-form")) syncJobForm();
});

// --- start ---------------------------------------------------------------------------------------------------

function mount() {
  drawCharts();
  syncJobForm();
  updateJobCount();
}

mount();
