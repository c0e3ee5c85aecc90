// Model registry: deploy / roll back buttons, status dots and prediction totals, live.

import { realtime } from "../realtime.js";
import { liveFragments, morph, postJSON, setText, toast } from "../ui.js";

const data = JSON.parse(document.getElementById("models-data").textContent);
const $ = (id) => document.getElementById(id);
const groups = $("model-groups");
const number = new Intl.NumberFormat();

const rowFor = (id) => document.querySelector(`tr[data-model-id="${id}"]`);
const groupOf = (el) => el?.closest(".model-group") ?? null;

function formatCounts() {
  for (const cell of document.querySelectorAll(".model-predictions, .group-total")) {
    setText(cell, number.format(Number(cell.textContent.replace(/\D/g, "")) || 0));
  }
  const total = $("stat-predictions");
  setText(total, number.format(Number(total.dataset.total) || 0));
}

// --- registry cards, rendered by the server (training:model-group) and morphed in ---------------------------

function refreshSummary() {
  const all = [...groups.querySelectorAll(".model-group")];
  setText($("stat-models"), String(all.length));
  setText($("stat-versions"), String(groups.querySelectorAll("tr[data-model-id]").length));
  setText($("stat-serving"), String(all.filter((g) => g.querySelector('tr[data-status="active"]')).length));
  $("models-empty").hidden = all.length > 0;
}

const groupNamed = (name) => [...groups.querySelectorAll(".model-group")].find((g) => g.dataset.modelName === name);

const cards = liveFragments({
  url: (modelId) => data.groupUrl.replace(/\/0\/group\/$/, `/${modelId}/group/`),
  find: (modelId) => groupOf(rowFor(modelId)),
  // A version of a name already shown (its row is new) morphs that name's card; a new name comes first.
  place: (section) => {
    const current = groupNamed(section.dataset.modelName);
    if (current) morph(current, section);
    else groups.prepend(section);
  },
  onUpdate: () => {
    formatCounts();
    refreshSummary();
  },
});

// --- deploy / roll back ------------------------------------------------------------------------------------

groups.addEventListener("click", async (event) => {
  const button = event.target.closest('[data-action="deploy"]');
  if (!button || button.disabled) return;
  const row = button.closest("tr");
  const label = button.textContent;
  button.disabled = true;
  setText(button, label === "Roll back" ? "Rolling back…" : "Deploying…");
  const { ok, body } = await postJSON(button.dataset.url);
  if (!ok) toast({ kind: "error", title: `Could not ${label.toLowerCase()}`, message: body?.detail || "The deployment failed." });
  // The events will say the same; refresh now so the page never waits on the socket.
  cards.refresh(row.dataset.modelId);
});

// --- delete (a version that does not serve) ------------------------------------------------------------

groups.addEventListener("click", async (event) => {
  const button = event.target.closest('[data-action="delete"]');
  if (!button || button.disabled) return;
  const row = button.closest("tr");
  const card = groupOf(row);
  if (!window.confirm(`Delete ${card?.dataset.modelName ?? "this model"} v${row.dataset.version}? Its artifact goes too.`)) return;
  button.disabled = true;
  const { ok, body } = await postJSON(button.dataset.url, undefined, { method: "DELETE" });
  if (!ok) {
    toast({ kind: "error", title: "Could not delete", message: body?.detail || "The version could not be deleted." });
    button.disabled = false;
    return;
  }
  row.remove();
  // The card follows what is left of its name (or goes with its last version).
  const left = card?.querySelector("tr[data-model-id]");
  if (left) cards.refresh(left.dataset.modelId);
  else card?.remove();
  refreshSummary();
});

// --- live ---------------------------------------------------------------------------------------------------

for (const type of ["model_status_change", "model_deployed", "training_completed"]) {
  realtime.on(type, (e) => e.model_id != null && cards.refresh(e.model_id));
}

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
