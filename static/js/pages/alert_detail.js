// One alert's page: its state and its deliveries, re-rendered by the server (monitoring:alert-detail-body)
// and morphed in when system_alert, notification_sent or notification_failed is about this alert.

import { realtime } from "../realtime.js";
import { liveElement, refreshRelativeTimes } from "../ui.js";

const body = document.getElementById("alert-body");
if (body) {
  const alertId = Number(body.dataset.alertId);
  const refresh = liveElement(body.dataset.url, "alert-body", (el) => refreshRelativeTimes(el));
  // A grouped message names its first alert only: a notification already listed here is ours too.
  const known = (id) => body.isConnected && document.querySelector(`#alert-body [data-notification-id="${id}"]`);
  // Nothing listed yet: a grouped message about this alert may name another one first.
  const waiting = () => Boolean(document.getElementById("no-deliveries"));
  const mine = (event) => event.alert_id === alertId || (event.notification_id != null && known(event.notification_id))
    || (event.kind === "firing" && waiting());
  realtime.on("system_alert", (event) => { if (event.alert?.id === alertId) refresh(); });
  realtime.on("notification_sent", (event) => { if (mine(event)) refresh(); });
  realtime.on("notification_failed", (event) => { if (mine(event)) refresh(); });
}
