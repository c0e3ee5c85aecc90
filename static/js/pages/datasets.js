// Datasets page: upload a CSV with XMLHttpRequest (so the browser's own upload progress drives the
// bar), and keep the datasets table live from dataset events. Rows are rendered by the server
// (datasets:row), so a row inserted live looks exactly like one rendered with the page.

import { realtime } from "../realtime.js";
import { csrfToken, formatBytes, insertNewestFirst, liveFragments, morph, setProgress, setStatusBadge, setText, toast } from "../ui.js";

const data = JSON.parse(document.getElementById("datasets-data").textContent);
const $ = (id) => document.getElementById(id);
const rows = $("dataset-rows");

// --- formatting ---------------------------------------------------------------------------------------

function formatSeconds(s) {
  if (!Number.isFinite(s) || s < 0) return "";
  if (s < 1) return "under a second left";
  if (s < 90) return `${Math.round(s)} s left`;
  return `${Math.round(s / 60)} min left`;
}

/** Problem details (RFC 9457) → a title and a list of lines, for any error answer. */
function problemLines(body, status) {
  const title = body?.detail || body?.title || (status ? `The server answered ${status}.` : "The upload failed.");
  const lines = [];
  const walk = (value, prefix) => {
    if (Array.isArray(value)) value.forEach((v) => walk(v, prefix));
    else if (value && typeof value === "object") Object.entries(value).forEach(([k, v]) => walk(v, k === "non_field_errors" ? prefix : k));
    else if (value != null) lines.push(prefix ? `${prefix.replace(/_/g, " ")}: ${value}` : String(value));
  };
  if (body?.errors) walk(body.errors, "");
  // The detail already says it when there is a single error.
  return { title, lines: lines.length > 1 ? lines : [] };
}

// --- the upload form ----------------------------------------------------------------------------------

function initUpload() {

  const form = $("upload-form");
  const input = $("upload-file");
  const dropzone = $("dropzone");
  const submit = $("upload-submit");
  const abortButton = $("upload-abort");
  const progressBox = $("upload-progress");
  const bar = progressBox.querySelector(".progress");
  let chosen = null; // the File to upload
  let xhr = null;

  function showError(title, lines = []) {
    const box = $("upload-error");
    setText($("upload-error-title"), title);
    $("upload-error-list").replaceChildren(...lines.map((line) => Object.assign(document.createElement("li"), { textContent: line })));
    box.hidden = false;
  }

  function clearMessages() {
    $("upload-error").hidden = true;
    $("upload-done").hidden = true;
  }

  async function readHeader(file) {
    // Offer the header's columns as target suggestions: the first line of the first 64 KB.
    try {
      const text = await file.slice(0, 65536).text();
      const line = text.replace(/^\uFEFF/, "").split(/\r?\n/, 1)[0] || "";
      const delimiter = [",", ";", "\t", "|"].reduce((best, d) => (line.split(d).length > line.split(best).length ? d : best), ",");
      return line
        .split(delimiter)
        .map((c) => c.trim().replace(/^"(.*)"$/, "$1"))
        .filter(Boolean)
        .slice(0, 500);
    } catch {
      return [];
    }
  }

  async function choose(file) {
    clearMessages();
    chosen = file || null;
    const info = $("upload-file-info");
    dropzone.dataset.state = chosen ? "chosen" : "empty";
    info.hidden = !chosen;
    $("dropzone-prompt").hidden = Boolean(chosen);
    submit.disabled = !chosen;
    progressBox.hidden = true;
    $("upload-columns").replaceChildren();
    if (!chosen) {
      input.value = "";
      setText($("upload-target-hint"), "Suggestions come from the file's header once you pick a file.");
      return;
    }
    setText($("upload-file-name"), chosen.name);
    setText($("upload-file-meta"), formatBytes(chosen.size));
    $("upload-name").placeholder = chosen.name.replace(/\.[^.]+$/, "") || "Defaults to the file name";
    if (chosen.size > data.maxUploadBytes) {
      showError(`${chosen.name} is ${formatBytes(chosen.size)}: larger than the ${data.maxUploadMb} MB upload limit.`);
      submit.disabled = true;
      return;
    }
    const columns = await readHeader(chosen);
    if (chosen !== file) return; // another file was picked meanwhile
    $("upload-columns").replaceChildren(...columns.map((c) => new Option(c, c)));
    setText($("upload-target-hint"), columns.length ? `${columns.length} columns in the header; pick one or leave empty.` : "The header could not be read; type the column name.");
  }

  input.addEventListener("change", () => choose(input.files[0]));
  $("upload-file-clear").addEventListener("click", () => {
    choose(null);
    input.focus();
  });

  // Drag and drop anywhere on the zone; the page ignores files dropped elsewhere (no navigation away).
  let dragDepth = 0;
  dropzone.addEventListener("dragenter", (e) => {
    e.preventDefault();
    dragDepth += 1;
    dropzone.classList.add("is-dragover");
  });
  dropzone.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  dropzone.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropzone.classList.remove("is-dragover");
  });
  dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove("is-dragover");
    const file = e.dataTransfer?.files?.[0];
    if (!file) return;
    if (xhr) return;
    try {
      input.files = e.dataTransfer.files; // keeps the input in step where the browser allows it
    } catch {
      /* read-only in old browsers: `chosen` is what is sent */
    }
    choose(file);
  });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  function setBusy(busy) {
    form.classList.toggle("is-uploading", busy);
    submit.disabled = busy || !chosen;
    abortButton.hidden = !busy;
    for (const el of form.querySelectorAll("input, textarea, #upload-file-clear")) el.disabled = busy;
  }

  function renderProgress(loaded, total, startedAt) {
    const percent = total ? (100 * loaded) / total : 0;
    setProgress(bar, percent, "running");
    const elapsed = (performance.now() - startedAt) / 1000;
    const speed = elapsed > 0.05 ? loaded / elapsed : 0;
    setText($("upload-bytes"), `${formatBytes(loaded)} of ${formatBytes(total)}`);
    setText($("upload-speed"), speed ? `${formatBytes(speed)}/s` : "");
    setText($("upload-eta"), speed && loaded < total ? formatSeconds((total - loaded) / speed) : loaded >= total ? "processing…" : "");
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!chosen || xhr) return;
    clearMessages();
    const body = new FormData();
    body.append("file", chosen, chosen.name);
    body.append("name", $("upload-name").value.trim());
    body.append("target_column", $("upload-target").value.trim());
    body.append("description", $("upload-description").value.trim());

    const file = chosen;
    const startedAt = performance.now();
    progressBox.hidden = false;
    $("upload-server").hidden = true;
    setProgress(bar, 0, "running");
    renderProgress(0, file.size, startedAt);
    setBusy(true);

    const request = new XMLHttpRequest();
    xhr = request;
    request.open("POST", data.api.datasets);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Accept", "application/json");
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) renderProgress(event.loaded, event.total, startedAt);
    });
    request.addEventListener("load", () => {
      xhr = null;
      setBusy(false);
      const answer = request.response;
      if (request.status === 201 && answer?.id) {
        setProgress(bar, 100, "succeeded");
        setText($("upload-eta"), "done");
        uploaded(answer, file);
        return;
      }
      setProgress(bar, 100, "failed");
      if (request.status === 413) {
        const { title } = problemLines(answer, 413);
        showError(title || `The file is larger than the ${data.maxUploadMb} MB upload limit.`);
      } else if (request.status === 401 || request.status === 403) {
        showError(answer?.detail || "Your session has ended: log in again to upload.");
      } else {
        const { title, lines } = problemLines(answer, request.status);
        showError(title, lines);
      }
    });
    request.addEventListener("error", () => {
      xhr = null;
      setBusy(false);
      setProgress(bar, Number(bar.getAttribute("aria-valuenow")) || 0, "failed");
      showError(
        file.size > data.maxUploadBytes
          ? `The file is larger than the ${data.maxUploadMb} MB upload limit.`
          : "The upload failed: the connection to the server was lost. Check your network and try again.",
      );
    });
    request.addEventListener("abort", () => {
      xhr = null;
      setBusy(false);
      setProgress(bar, Number(bar.getAttribute("aria-valuenow")) || 0, "cancelled");
      setText($("upload-eta"), "cancelled");
    });
    request.send(body);
  });

  abortButton.addEventListener("click", () => xhr?.abort());

  function uploaded(dataset, file) {
    const done = $("upload-done");
    const link = Object.assign(document.createElement("a"), { href: dataset.url || `${location.pathname}${dataset.id}/`, textContent: dataset.name });
    done.replaceChildren(
      document.createTextNode("Uploaded "),
      link,
      document.createTextNode(` (${formatBytes(file.size)}). It is being validated and profiled — its row below updates by itself.`),
    );
    done.hidden = false;
    for (const id of ["upload-name", "upload-target", "upload-description"]) $(id).value = "";
    chosen = null;
    input.value = "";
    dropzone.dataset.state = "empty";
    $("upload-file-info").hidden = true;
    $("dropzone-prompt").hidden = false;
    $("upload-name").placeholder = "Defaults to the file name";
    submit.disabled = true;
    ensureRow(dataset.id, { highlight: true });
  }

  // The server counts the body as it streams in and reports it to this user (upload_progress).
  realtime.on("upload_progress", (event) => {
    if (!xhr && event.progress_percent < 100) return;
    const line = $("upload-server");
    if (progressBox.hidden) return;
    line.hidden = false;
    setText(line, `Server received ${formatBytes(event.bytes_uploaded)} of ${formatBytes(event.total_bytes)} (${Math.round(event.progress_percent)}%)`);
  });
}

// --- the datasets table -------------------------------------------------------------------------------

const filter = $("dataset-filter");

function rowFor(id) {
  return rows.querySelector(`tr[data-dataset-id="${id}"]`);
}

function rowUrl(id) {
  return data.rowUrl.replace(/\/0\/row\/$/, `/${id}/row/`);
}

function updateCount() {
  const all = [...rows.rows];
  const shown = all.filter((r) => !r.hidden).length;
  const needle = filter.value.trim();
  setText($("dataset-count"), needle ? `${shown} of ${all.length} datasets` : `${all.length} dataset${all.length === 1 ? "" : "s"}`);
  $("datasets-empty").hidden = all.length > 0;
  $("datasets-filtered-empty").hidden = !(all.length > 0 && shown === 0);
}

function applyFilter(row) {
  const needle = filter.value.trim().toLowerCase();
  const targets = row ? [row] : [...rows.rows];
  for (const r of targets) r.hidden = Boolean(needle) && !(r.dataset.name || "").includes(needle);
  updateCount();
}

filter.addEventListener("input", () => applyFilter());

// Rows are rendered by the server (datasets:row, templates/datasets/_dataset_row.html) and morphed in.
const datasetRows = liveFragments({
  url: rowUrl,
  find: rowFor,
  place: (row) => insertNewestFirst(rows, row, "datasetId"),
  gone: (id, row) => {
    row?.remove();
    updateCount();
  },
  onUpdate: (row) => applyFilter(row),
});
const ensureRow = datasetRows.refresh;

function onDatasetChange(event) {
  const row = rowFor(event.dataset_id);
  if (row && event.status) {
    // The badge follows at once; the rest of the row (rows, quality...) comes from the server.
    row.dataset.status = event.status;
    setStatusBadge(row.querySelector(".badge"), event.status);
  }
  ensureRow(event.dataset_id);
}

realtime.on("dataset_created", (event) => ensureRow(event.dataset_id));
realtime.on("dataset_updated", onDatasetChange);
realtime.on("dataset_processed", onDatasetChange);
realtime.on("dataset_deleted", (event) => {
  const row = rowFor(event.dataset_id);
  if (!row) return;
  row.classList.add("is-leaving");
  setTimeout(() => {
    row.remove();
    updateCount();
  }, 250);
});

// After a gap the replay could not cover: re-render the whole table from the server.
realtime.onResync(async () => {
  try {
    const response = await fetch(location.pathname, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("dataset-rows");
    if (fresh) morph(rows, document.importNode(fresh, true));
    applyFilter();
  } catch (err) {
    console.warn("resync failed", err);
  }
});

// A message left by the detail page after a delete.
try {
  const note = sessionStorage.getItem("datasets:flash");
  if (note) {
    sessionStorage.removeItem("datasets:flash");
    toast(JSON.parse(note));
  }
} catch {
  /* storage disabled */
}

updateCount();

// Only a user who may upload here gets the form (a viewer sees the locked hint instead).
if ($("upload-form")) initUpload();
