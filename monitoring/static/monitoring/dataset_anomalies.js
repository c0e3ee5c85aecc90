// templates/monitoring/includes/dataset_anomalies.html: start an IsolationForest over the dataset and
// show its most anomalous rows, re-read from the API when an event says the detection ended.

import { realtime } from "../js/realtime.js";
import { postJSON, setStatusBadge, setText } from "../js/ui.js";

const section = document.getElementById("dataset-anomalies");

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function fmt(value, digits = 3) {
  return value == null ? "—" : Number(value).toFixed(digits);
}

function render(detection) {
  const status = section.querySelector('[data-field="status"]');
  let badge = status.querySelector(".badge");
  if (!badge) {
    badge = el("span", { className: "badge" });
    status.append(badge);
  }
  setStatusBadge(badge, detection.status);
  const result = section.querySelector('[data-field="result"]');
  if (detection.status === "failed") {
    result.replaceChildren(el("p", { className: "alert alert--error", role: "alert", textContent: detection.error || "The detection failed." }));
    return;
  }
  if (detection.status !== "succeeded") {
    result.replaceChildren(el("p", { className: "muted", textContent: "Scoring every row in a worker…" }));
    return;
  }
  const limit = Number(section.dataset.limit) || 20;
  const columns = (detection.columns_used || []).slice(0, 8);
  const summary = el("p", { className: "anomalies-summary" }, [
    el("span", {}, [el("strong", { textContent: String(detection.n_flagged) }), " of ", el("strong", { textContent: String(detection.n_rows) }),
      " rows flagged (", el("strong", { textContent: `${(detection.share_flagged * 100).toFixed(1)}%` }), ")"]),
    el("span", {}, ["highest score ", el("strong", { textContent: fmt(detection.max_score) })]),
    el("span", {}, ["threshold ", el("strong", { textContent: fmt(detection.threshold) })]),
    el("span", { textContent: `columns: ${(detection.columns_used || []).join(", ")}` }),
  ]);
  const head = el("tr", {}, [el("th", { scope: "col", textContent: "Row" }), el("th", { scope: "col", textContent: "Score" }),
    ...columns.map((c) => el("th", { scope: "col", textContent: c }))]);
  const rows = (detection.top_rows || []).slice(0, limit).map((r) => {
    const tr = el("tr", {}, [el("td", { className: "num", textContent: String(r.row) }), el("td", { className: "num", textContent: fmt(r.score) }),
      ...columns.map((c) => el("td", { className: "num", textContent: r.values?.[c] == null ? "—" : String(r.values[c]) }))]);
    tr.dataset.row = String(r.row);
    tr.dataset.flagged = String(Boolean(r.flagged));
    return tr;
  });
  const table = el("table", { className: "table anomaly-rows" }, [el("thead", {}, [head]), el("tbody", {}, rows)]);
  result.replaceChildren(summary, el("div", { className: "table-wrap" }, [table]));
}

async function refresh() {
  const response = await fetch(section.dataset.latestUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.ok) render(await response.json());
}

function showError(text) {
  const error = section.querySelector("[data-anomaly-error]");
  if (!error) return;
  error.hidden = !text;
  setText(error, text || "");
}

if (section) {
  const datasetId = Number(section.dataset.datasetId);
  const form = section.querySelector("[data-anomaly-form]");
  form?.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const button = form.querySelector("[data-anomaly-run]");
    button.disabled = true;
    const columns = [...form.querySelectorAll('input[name="columns"]:checked')].map((i) => i.value);
    const contamination = Number(form.elements.contamination.value);
    try {
      const { ok, body } = await postJSON(section.dataset.detectUrl, { dataset: datasetId, contamination, columns });
      if (ok) render(body);
      else showError(body?.detail || "The detection could not be started.");
    } finally {
      button.disabled = false;
    }
  });
  realtime.on("anomaly_detected", (e) => {
    if (e.source === "dataset" && e.dataset_id === datasetId) refresh();
  });
  realtime.on("activity_update", (e) => {
    const a = e.activity || {};
    if (a.action_type === "anomaly_detection" && a.metadata?.dataset_id === datasetId && a.status === "failed") refresh();
  });
}
