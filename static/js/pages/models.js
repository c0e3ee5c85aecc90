// Model registry: deploy / roll back buttons, status dots and prediction totals, live.

import { realtime } from "../realtime.js";
import { postJSON, setStatusBadge, setText, toast } from "../ui.js";

const data = JSON.parse(document.getElementById("models-data").textContent);
const $ = (id) => document.getElementById(id);
const groups = $("model-groups");
const number = new Intl.NumberFormat();

const rowFor = (id) => document.querySelector(`tr[data-model-id="${id}"]`);
const groupOf = (row) => row.closest(".model-group");

function formatCounts() {
  for (const cell of document.querySelectorAll(".model-predictions, .group-total")) {
    setText(cell, number.format(Number(cell.textContent.replace(/\D/g, "")) || 0));
  }
  const total = $("stat-predictions");
  setText(total, number.format(Number(total.dataset.total) || 0));
}

// --- buttons and summary follow the statuses ------------------------------------------------------------

function refreshGroup(group) {
  const rows = [...group.querySelectorAll("tr[data-model-id]")];
  const active = rows.find((r) => r.dataset.status === "active");
  const activeVersion = active ? Number(active.dataset.version) : null;
  setText(group.querySelector(".group-serving"), active ? `Serving v${activeVersion}` : "Not deployed");
  for (const row of rows) {
    const button = row.querySelector('[data-action="deploy"]');
    if (!button || button.dataset.busy) continue;
    const s = row.dataset.status;
    button.disabled = s === "active" || s === "error";
    button.classList.toggle("btn--ghost", s === "active");
    button.classList.toggle("btn--secondary", s !== "active");
    let label = "Deploy";
    if (s === "active") label = "Serving";
    else if (s === "error") label = "Unavailable";
    else if (activeVersion != null && Number(row.dataset.version) < activeVersion) label = "Roll back";
    setText(button, label);
  }
}

function refreshSummary() {
  const all = [...groups.querySelectorAll(".model-group")];
  setText($("stat-models"), String(all.length));
  setText($("stat-versions"), String(groups.querySelectorAll("tr[data-model-id]").length));
  setText($("stat-serving"), String(all.filter((g) => g.querySelector('tr[data-status="active"]')).length));
  $("models-empty").hidden = all.length > 0;
}

function setModelStatus(row, status) {
  row.dataset.status = status;
  setStatusBadge(row.querySelector(".badge"), status);
  refreshGroup(groupOf(row));
  refreshSummary();
}

// --- new versions (registered after the page was rendered) -----------------------------------------------

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text != null) td.textContent = text;
  return td;
}

function newGroup(name) {
  const section = document.createElement("section");
  section.className = "card model-group";
  section.dataset.modelName = name;
  section.setAttribute("aria-label", name);
  section.innerHTML =
    '<header class="card__header"><div class="card__title"><h2></h2><span class="muted group-serving">Not deployed</span></div>' +
    '<span class="muted"><span class="group-total">0</span> predictions</span></header>' +
    '<div class="table-wrap"><table class="table models-table"><thead><tr><th scope="col">Version</th><th scope="col">Status</th>' +
    '<th scope="col">Algorithm</th><th scope="col">Validation score</th><th scope="col">Metrics</th><th scope="col">Predictions</th>' +
    '<th scope="col">Created</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody></tbody></table></div>';
  section.querySelector("h2").textContent = name;
  groups.prepend(section);
  return section;
}

function addVersion(v) {
  if (rowFor(v.id)) return;
  const group = [...groups.querySelectorAll(".model-group")].find((g) => g.dataset.modelName === v.name) || newGroup(v.name);
  const row = document.createElement("tr");
  row.id = `model-${v.id}`;
  row.dataset.modelId = String(v.id);
  row.dataset.version = String(v.version);
  row.dataset.status = v.status;
  row.className = "is-new";

  const first = cell(null);
  const strong = document.createElement("strong");
  strong.textContent = `v${v.version}`;
  first.append(strong);
  if (v.training_job) {
    const a = document.createElement("a");
    a.className = "muted";
    a.href = `/training/jobs/${v.training_job}/`;
    a.textContent = ` job #${v.training_job}`;
    first.append(" ", a);
  }
  const statusCell = cell(null, "model-status");
  const badge = document.createElement("span");
  badge.className = "badge";
  statusCell.append(badge);
  setStatusBadge(badge, v.status);
  const metrics = cell(null, "metrics-inline");
  for (const [key, value] of Object.entries(v.metrics || {})) {
    const span = document.createElement("span");
    const k = document.createElement("span");
    k.className = "muted";
    k.textContent = key;
    span.append(k, ` ${value == null ? "—" : Number(value).toFixed(3)}`);
    metrics.append(span);
  }
  const actions = cell(null, "model-actions");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn btn--sm btn--secondary";
  button.dataset.action = "deploy";
  button.dataset.url = `${data.api.models}${v.id}/deploy/`;
  actions.append(button);
  row.append(
    first,
    statusCell,
    cell(`${v.algorithm} · ${v.task}`),
    cell(v.validation_score == null ? "—" : Number(v.validation_score).toFixed(3), "num"),
    metrics,
    cell(number.format(v.prediction_count || 0), "num model-predictions"),
    cell(new Date(v.created_at).toLocaleString(), "muted"),
    actions,
  );
  group.querySelector("tbody").prepend(row);
  refreshGroup(group);
  refreshSummary();
}

async function fetchVersion(id) {
  const response = await fetch(`${data.api.models}${id}/`, { credentials: "same-origin", headers: { Accept: "application/json" } });
  return response.ok ? response.json() : null;
}

// --- deploy / roll back ------------------------------------------------------------------------------------

groups.addEventListener("click", async (event) => {
  const button = event.target.closest('[data-action="deploy"]');
  if (!button || button.disabled) return;
  const row = button.closest("tr");
  const label = button.textContent;
  button.disabled = true;
  button.dataset.busy = "1";
  setText(button, label === "Roll back" ? "Rolling back…" : "Deploying…");
  const { ok, body } = await postJSON(button.dataset.url);
  delete button.dataset.busy;
  if (!ok) {
    toast({ kind: "error", title: `Could not ${label.toLowerCase()}`, message: body?.detail || "The deployment failed." });
    refreshGroup(groupOf(row));
    return;
  }
  // The events will say the same; apply the answer now so the page never waits on the socket.
  for (const other of groupOf(row).querySelectorAll('tr[data-status="active"]')) if (other !== row) other.dataset.status = "inactive";
  for (const other of groupOf(row).querySelectorAll("tr[data-model-id]")) setStatusBadge(other.querySelector(".badge"), other.dataset.status);
  setModelStatus(row, body.model.status);
});

// --- live ---------------------------------------------------------------------------------------------------

realtime.on("model_status_change", (e) => {
  const row = rowFor(e.model_id);
  if (row) setModelStatus(row, e.status);
});

realtime.on("model_deployed", async (e) => {
  if (!rowFor(e.model_id)) {
    const v = await fetchVersion(e.model_id);
    if (v) addVersion(v);
  }
});

realtime.on("training_completed", async (e) => {
  const v = await fetchVersion(e.model_id);
  if (v) addVersion(v);
});

realtime.on("prediction_volume", (e) => {
  const total = $("stat-predictions");
  total.dataset.total = String(e.total_predictions);
  setText(total, number.format(e.total_predictions));
  setText($("stat-rate"), `${number.format(Math.round(e.predictions_per_minute))} per minute`);
  const row = e.model_id != null ? rowFor(e.model_id) : null;
  if (row && e.model_predictions != null) {
    const cellEl = row.querySelector(".model-predictions");
    setText(cellEl, number.format(e.model_predictions));
    cellEl.classList.remove("is-bumped");
    void cellEl.offsetWidth;
    cellEl.classList.add("is-bumped");
    const group = groupOf(row);
    const sum = [...group.querySelectorAll(".model-predictions")].reduce((n, c) => n + (Number(c.textContent.replace(/\D/g, "")) || 0), 0);
    setText(group.querySelector(".group-total"), number.format(sum));
  }
});

realtime.onResync(() => location.reload());
formatCounts();
