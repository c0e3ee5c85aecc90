// The Monitoring page's notification channels: each row is rendered by the server
// (monitoring:channel-row) and morphed in again when a delivery to its channel succeeds or fails
// (notification_sent / notification_failed). "Send test" goes through the API (202: queued) and the
// row follows the delivery; without scripts the same button posts the page's form. Deleting asks first.

import { realtime } from "../realtime.js";
import { liveFragments, postJSON, toast } from "../ui.js";

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

  body.addEventListener("submit", async (event) => {
    const form = event.target.closest("form");
    if (!form) return;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    const button = form.querySelector('button[data-action="test"]');
    const testUrl = section.dataset.channelTestUrl || "";
    if (!button || !testUrl) return;
    event.preventDefault();
    const id = form.closest("tr").dataset.channelId;
    button.disabled = true;
    try {
      const { ok, status, body: answer } = await postJSON(testUrl.replace(/\/0\/test\/$/, `/${id}/test/`));
      if (ok) toast({ kind: "info", title: "Test queued", message: "The row shows the delivery when it is done." });
      else toast({ kind: "error", title: "Could not send a test", message: answer?.detail || `HTTP ${status}` });
      rows.refresh(id);
    } catch (err) {
      toast({ kind: "error", title: "Could not send a test", message: String(err) });
    } finally {
      button.disabled = false;
    }
  });
}
