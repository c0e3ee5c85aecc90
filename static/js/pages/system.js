// The System page: components and integrations (service_health, integration_status, and
// component_health as soon as one changes), the Celery workers with their queues and active tasks
// (the celery component of service_health), and each host's last sample (system_metrics).
// The tables, the workers and the hosts are rendered by the server: on their events the page
// fetches the fragment (monitoring:system-components, monitoring:system-workers, monitoring:hosts)
// and morphs it in.

import { realtime } from "../realtime.js";
import { liveElement, refreshRelativeTimes, relativeTime, setStatusBadge, setText } from "../ui.js";

const data = JSON.parse(document.getElementById("system-data")?.textContent || "{}");
const $ = (id) => document.getElementById(id);

// --- components -------------------------------------------------------------------------------------

const statuses = new Map(); // component → the status shown

function noteStatuses(body, { highlight }) {
  for (const row of body.rows) {
    const before = statuses.get(row.dataset.component);
    if (highlight && before && before !== row.dataset.status) {
      row.classList.remove("is-changed");
      void row.offsetWidth; // restart the animation
      row.classList.add("is-changed");
    }
    statuses.set(row.dataset.component, row.dataset.status);
  }
}

function componentTable(group, id) {
  noteStatuses($(id), { highlight: false });
  const url = data.componentsUrl.replace("/group/", `/${group}/`);
  return liveElement(url, id, (body) => noteStatuses(body, { highlight: true }));
}

const refreshServices = componentTable("services", "service-rows");
const refreshIntegrations = componentTable("integrations", "integration-rows");

// --- workers ------------------------------------------------------------------------------------------

const refreshWorkers = liveElement(data.workersUrl, "workers", (list) => {
  setText($("worker-count"), String(list.children.length));
  $("workers-empty").hidden = list.children.length > 0;
});

// --- hosts --------------------------------------------------------------------------------------------

const refreshHosts = liveElement(data.hostsUrl, "hosts", (list) => {
  $("hosts-empty").hidden = list.children.length > 0;
});

realtime.on("service_health", (e) => {
  refreshServices();
  if ((e.services || []).some((s) => s.name === "celery")) refreshWorkers();
  const at = (e.services || [])[0]?.checked_at || e.timestamp;
  const checked = $("checked-at");
  checked.dateTime = at;
  setText(checked, relativeTime(at));
});

realtime.on("integration_status", () => refreshIntegrations());

realtime.on("component_health", (e) => {
  if ($("integration-rows").querySelector(`tr[data-component="${CSS.escape(e.component)}"]`)) refreshIntegrations();
  else refreshServices();
});

realtime.on("health_change", (e) => {
  const wrap = $("sys-health");
  wrap.title = e.reason || "";
  setStatusBadge(wrap.querySelector(".badge"), e.current_health, `Health: ${e.current_health}`);
});

realtime.on("system_metrics", () => refreshHosts());

refreshRelativeTimes();
setInterval(refreshRelativeTimes, 5000);
