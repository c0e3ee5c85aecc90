// The System page: components and integrations (service_health, integration_status, and
// component_health as soon as one changes), the Celery workers with their queues and active tasks
// (the celery component of service_health), and each host's last sample (system_metrics).

import { realtime } from "../realtime.js";
import { refreshRelativeTimes, relativeTime, setStatusBadge, setText } from "../ui.js";

const $ = (id) => document.getElementById(id);

function formatMs(v) {
  return v == null ? "—" : `${Math.round(v).toLocaleString()} ms`;
}

function renderComponent(row, c) {
  const changed = row.dataset.status && row.dataset.status !== c.status;
  row.dataset.component = c.name;
  row.dataset.status = c.status;
  setText(row.querySelector('[data-field="label"]'), c.label || c.name);
  setStatusBadge(row.querySelector(".badge"), c.status);
  if ("latency_ms" in c) setText(row.querySelector('[data-field="latency"]'), formatMs(c.latency_ms));
  if ("detail" in c) setText(row.querySelector('[data-field="detail"]'), c.detail || "");
  const time = row.querySelector('[data-field="checked"]');
  if (c.checked_at) {
    time.dateTime = c.checked_at;
    setText(time, relativeTime(c.checked_at));
  }
  if (changed) {
    row.classList.remove("is-changed");
    void row.offsetWidth;
    row.classList.add("is-changed");
  }
}

function componentRow(body, name) {
  let row = document.querySelector(`tr[data-component="${name}"]`);
  if (!row && body) {
    row = $("component-template").content.firstElementChild.cloneNode(true);
    row.dataset.status = "";
    body.append(row);
  }
  return row;
}

function renderList(body, items) {
  for (const c of items || []) renderComponent(componentRow(body, c.name), c);
}

function renderWorkers(workers) {
  const list = $("workers");
  const seen = new Set();
  for (const w of workers) {
    seen.add(w.name);
    let card = list.querySelector(`[data-worker="${CSS.escape(w.name)}"]`);
    if (!card) {
      card = $("worker-template").content.firstElementChild.cloneNode(true);
      card.dataset.worker = w.name;
      list.append(card);
    }
    setText(card.querySelector('[data-field="name"]'), w.name);
    setText(card.querySelector('[data-field="active-count"]'), String(w.active_count ?? 0));
    setText(card.querySelector('[data-field="concurrency"]'), String(w.concurrency ?? "?"));
    const queues = card.querySelector('[data-field="queues"]');
    queues.replaceChildren(...(w.queues || []).map((q) => Object.assign(document.createElement("span"), { className: "queue", textContent: q })));
    const tasks = card.querySelector('[data-field="tasks"]');
    const items = (w.active || []).map((t) => {
      const li = document.createElement("li");
      const code = Object.assign(document.createElement("code"), { textContent: t.name || "task", title: t.id || "" });
      const time = Object.assign(document.createElement("span"), { className: "muted num", textContent: t.runtime_s != null ? `${Math.round(t.runtime_s)} s` : "" });
      li.append(code, time);
      return li;
    });
    if (!items.length) items.push(Object.assign(document.createElement("li"), { className: "muted", textContent: "Idle" }));
    tasks.replaceChildren(...items);
  }
  for (const card of [...list.children]) if (!seen.has(card.dataset.worker)) card.remove();
  setText($("worker-count"), String(workers.length));
  $("workers-empty").hidden = workers.length > 0;
}

realtime.on("service_health", (e) => {
  renderList($("service-rows"), e.services);
  const celery = (e.services || []).find((s) => s.name === "celery");
  if (celery) renderWorkers(celery.workers || []);
  const at = (e.services || [])[0]?.checked_at || e.timestamp;
  const checked = $("checked-at");
  checked.dateTime = at;
  setText(checked, relativeTime(at));
});

realtime.on("integration_status", (e) => renderList($("integration-rows"), e.integrations));

realtime.on("component_health", (e) => {
  const row = componentRow(null, e.component);
  if (row) renderComponent(row, { name: e.component, status: e.status, ...e.metrics, label: e.metrics?.label });
});

realtime.on("health_change", (e) => {
  const wrap = $("sys-health");
  wrap.title = e.reason || "";
  setStatusBadge(wrap.querySelector(".badge"), e.current_health, `Health: ${e.current_health}`);
});

realtime.on("system_metrics", (e) => {
  const row = document.querySelector(`#hosts [data-host="${CSS.escape(e.host)}"]`);
  if (!row) return;
  for (const metric of ["cpu_percent", "memory_percent", "disk_percent"]) {
    const meter = row.querySelector(`.meter[data-metric="${metric}"]`);
    const v = Math.max(0, Math.min(100, Number(e[metric]) || 0));
    meter.querySelector(".meter__fill").style.width = `${v.toFixed(1)}%`;
    setText(meter.querySelector(".meter__value"), `${Math.round(v)}%`);
  }
});

refreshRelativeTimes();
setInterval(refreshRelativeTimes, 5000);
