// The Monitoring page's notification channels: each row is rendered by the server
// (monitoring:channel-row) and morphed in again when a delivery to its channel succeeds or fails
// (notification_sent / notification_failed). Deleting asks first.

import { realtime } from "../realtime.js";
import { liveFragments } from "../ui.js";

const section = document.getElementById("channels");
const body = document.getElementById("channel-rows");

if (section && body) {
  const template = section.dataset.channelRowUrl || "";
  const rows = liveFragments({
    url: (id) => template.replace(/\/0\/row\/$/, `/${id}/row/`),
    find: (id) => body.querySelector(`tr[data-channel-id="${id}"]`),
    // Only channels already listed are refreshed: a new one appears with the page.
    place: () => {},
  });
  const refresh = (e) => {
    if (e.channel_id != null && body.querySelector(`tr[data-channel-id="${e.channel_id}"]`)) rows.refresh(e.channel_id);
  };
  realtime.on("notification_sent", refresh);
  realtime.on("notification_failed", refresh);

  body.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
