// templates/monitoring/includes/dataset_anomalies.html: start an IsolationForest over the dataset and
// show its most anomalous rows. The result is rendered by the server (monitoring:dataset-anomalies-result)
// and morphed in when the detection starts and when an event says it ended.

import { realtime } from "../realtime.js";
import { postJSON, refreshFragment, setStatusBadge, setText } from "../ui.js";

const section = document.getElementById("dataset-anomalies");

async function refresh() {
  const result = await refreshFragment(section.dataset.resultUrl, section.querySelector('[data-field="result"]'));
  const status = result?.dataset.status;
  if (!status) return;
  const holder = section.querySelector('[data-field="status"]');
  let badge = holder.querySelector(".badge");
  if (!badge) {
    badge = Object.assign(document.createElement("span"), { className: "badge" });
    holder.append(badge);
  }
  setStatusBadge(badge, status);
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
      if (ok) await refresh();
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
