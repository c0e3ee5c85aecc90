// Live events: connection diagnostics and a log of every event this page receives.

import { realtime } from "../realtime.js";
import { formatTime, humanize, postJSON, setStatusBadge, setText, toast } from "../ui.js";

const MAX_ROWS = 500;
const ENVELOPE = new Set(["type", "id", "timestamp"]);
// Colour family of an event type in the log (see .event-type[data-group] in app.css).
const GROUPS = [
  [/^(training|model|prediction)_/, "training"],
  [/^pipeline_/, "pipelines"],
  [/^(dataset|file|upload|quality|job)_/, "datasets"],
  [/^(system|health|anomaly|performance|chart|service|component|integration)_/, "monitoring"],
  [/^activity_/, "activity"],
  [/^(error|resync)$/, "problem"],
];

const $ = (id) => document.getElementById(id);
const log = $("event-log");
const typeFilter = $("event-type-filter");
const search = $("event-search");
const seenTypes = new Map(); // type → count

function groupOf(type) {
  for (const [pattern, group] of GROUPS) if (pattern.test(type)) return group;
  return "other";
}

function payloadOf(event) {
  const out = {};
  for (const [key, value] of Object.entries(event)) if (!ENVELOPE.has(key)) out[key] = value;
  return out;
}

function compact(value) {
  const text = JSON.stringify(value);
  return text.length > 220 ? `${text.slice(0, 219)}…` : text;
}

// --- the log ---------------------------------------------------------------------------------------

function addRow(event, source) {
  const row = document.createElement("tr");
  row.className = "log__row is-new";
  row.dataset.type = event.type;
  if (event.id != null) row.dataset.eventId = String(event.id);
  row.dataset.source = source;

  const when = event.timestamp ? new Date(event.timestamp) : new Date();
  const timeCell = row.insertCell();
  timeCell.className = "log__time";
  const time = document.createElement("time");
  time.dateTime = when.toISOString();
  time.textContent = formatTime(when, { ms: true });
  timeCell.append(time);

  const typeCell = row.insertCell();
  typeCell.className = "log__type";
  const type = document.createElement("span");
  type.className = "event-type";
  type.dataset.group = groupOf(event.type);
  type.textContent = event.type;
  typeCell.append(type);
  if (source === "poll") {
    const via = document.createElement("span");
    via.className = "tag";
    via.textContent = "polled";
    via.title = "Delivered by the offline poll of the events API";
    typeCell.append(via);
  }

  const idCell = row.insertCell();
  idCell.className = "log__id";
  idCell.textContent = event.id != null ? String(event.id) : "—";

  const payload = payloadOf(event);
  const payloadCell = row.insertCell();
  payloadCell.className = "log__payload";
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  const code = document.createElement("code");
  code.textContent = compact(payload);
  summary.append(code);
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(event, null, 2);
  details.append(summary, pre);
  payloadCell.append(details);
  row.dataset.search = JSON.stringify(payload).toLowerCase();

  log.prepend(row);
  setTimeout(() => row.classList.remove("is-new"), 1200);
  while (log.rows.length > MAX_ROWS) log.deleteRow(log.rows.length - 1);

  noteType(event.type);
  applyFilter(row);
  updateCountsSoon();
}

let countsTimer = null;
function updateCountsSoon() {
  // A burst of events (a replay) counts once, not once per row.
  countsTimer ??= setTimeout(() => {
    countsTimer = null;
    updateCounts();
  }, 50);
}

function noteType(type) {
  const count = (seenTypes.get(type) || 0) + 1;
  seenTypes.set(type, count);
  let option = [...typeFilter.options].find((o) => o.value === type);
  if (!option) {
    option = new Option(type, type);
    const after = [...typeFilter.options].slice(1).find((o) => o.value > type);
    typeFilter.add(option, after || null);
  }
  option.textContent = `${type} (${count})`;
}

function matches(row) {
  const type = typeFilter.value;
  const needle = search.value.trim().toLowerCase();
  return (!type || row.dataset.type === type) && (!needle || row.dataset.type.includes(needle) || row.dataset.search.includes(needle));
}

function applyFilter(row) {
  if (row) {
    row.hidden = !matches(row);
    return;
  }
  for (const r of log.rows) r.hidden = !matches(r);
  updateCounts();
}

function updateCounts() {
  const total = log.rows.length;
  const shown = [...log.rows].filter((r) => !r.hidden).length;
  const filtering = typeFilter.value || search.value.trim();
  setText($("log-count"), filtering ? `${shown} of ${total} events` : `${total} event${total === 1 ? "" : "s"}${total >= MAX_ROWS ? " (latest)" : ""}`);
  $("log-empty").hidden = total > 0;
  $("log-filtered-empty").hidden = !(total > 0 && shown === 0);
}

typeFilter.addEventListener("change", () => applyFilter());
search.addEventListener("input", () => applyFilter());
$("log-clear").addEventListener("click", () => {
  log.replaceChildren();
  updateCounts();
});

// Every event, and connection errors; heartbeats (pong) show up as latency instead.
realtime.on("*", (event, meta) => addRow(event, meta.source));

// This page's data is the log itself: after a replay gap there is nothing to reload (and a
// reload would empty the log), so the gap is recorded as a row instead.
realtime.onResync(() => {});

// --- diagnostics -----------------------------------------------------------------------------------

const STATE_HINTS = {
  connecting: "Opening the socket…",
  connected: "Receiving events over WebSocket",
  reconnecting: "Connection lost, retrying with backoff",
  disconnected: "Closed while the tab was hidden",
  error: "The socket reported an error",
  max_reconnect_attempts: "Gave up retrying — use Retry in the header",
};
const STATE_LABELS = { connected: "Live", max_reconnect_attempts: "Gave up" };

function renderDiagnostics(snap) {
  setStatusBadge($("diag-state").querySelector(".badge"), snap.state, STATE_LABELS[snap.state] || humanize(snap.state));
  let hint = STATE_HINTS[snap.state] || "";
  if (snap.state === "connected" && snap.connectedAt) hint = `Since ${formatTime(new Date(snap.connectedAt))}`;
  if (snap.state === "reconnecting" && snap.nextRetryAt) hint = `Next attempt at ${formatTime(new Date(snap.nextRetryAt))}`;
  if (snap.offline && snap.lastPollError) hint = `Offline poll failed: ${snap.lastPollError}`;
  setText($("diag-state-hint"), hint);

  setText($("diag-latency"), snap.latency != null ? String(snap.latency) : "—");
  setText($("diag-ping"), `Ping every ${Math.round(snap.pingIntervalMs / 1000)} s`);
  const quality = $("diag-quality");
  quality.dataset.quality = snap.quality || "";
  setText(quality, snap.quality ? humanize(snap.quality) : "—");

  setText($("diag-attempts"), String(snap.reconnectAttempts));
  setText($("diag-attempts-max"), ` / ${snap.maxReconnectAttempts}`);
  setText($("diag-reconnects"), snap.reconnects ? `${snap.reconnects} reconnect${snap.reconnects === 1 ? "" : "s"} since page load` : "No reconnects yet");

  setText($("diag-last-id"), snap.lastEventId ? String(snap.lastEventId) : "—");
  setText($("diag-last-at"), snap.lastEventAt ? `Last event at ${formatTime(new Date(snap.lastEventAt))}` : "Resume point for replay");

  setText($("diag-received"), String(snap.eventsReceived));
  setText($("diag-duplicates"), `${snap.duplicatesDropped} duplicate${snap.duplicatesDropped === 1 ? "" : "s"}`);
}

realtime.onState(renderDiagnostics);

// --- staff: publish a test event ------------------------------------------------------------------
// The status measures the round trip: click → API → Redis → socket → this log.

const publishButton = $("publish-test");
const arrivals = new Map(); // event id → when its row was added (the socket may beat the HTTP response)
let pending = null; // {id, startedAt}

function showDelivered(id, startedAt, arrivedAt) {
  const status = $("publish-status");
  setText(status, `Delivered in ${Math.max(0, Math.round(arrivedAt - startedAt))} ms`);
  status.title = `Test event #${id}`;
  // Typed handlers run before "*" ones: the row may be added just after this.
  setTimeout(() => {
    const row = log.querySelector(`tr[data-event-id="${id}"]`);
    if (!row) return;
    row.classList.remove("is-new");
    void row.offsetWidth; // restart the highlight
    row.classList.add("is-new");
    setTimeout(() => row.classList.remove("is-new"), 1200);
  }, 0);
}

realtime.on("activity_update", (event) => {
  if (event.activity?.action_type !== "test") return;
  const now = performance.now();
  if (pending && pending.id === event.id) {
    showDelivered(event.id, pending.startedAt, now);
    pending = null;
  } else {
    arrivals.set(event.id, now);
    if (arrivals.size > 50) arrivals.delete(arrivals.keys().next().value);
  }
});

if (publishButton) {
  publishButton.addEventListener("click", async () => {
    const status = $("publish-status");
    const startedAt = performance.now();
    publishButton.disabled = true;
    setText(status, "Publishing…");
    status.title = "";
    try {
      const { ok, status: code, body } = await postJSON(publishButton.dataset.url);
      if (!ok) throw new Error(body?.detail || `HTTP ${code}`);
      if (arrivals.has(body.id)) {
        showDelivered(body.id, startedAt, arrivals.get(body.id));
      } else {
        pending = { id: body.id, startedAt };
        setText(status, `Published #${body.id}, waiting…`);
      }
    } catch (err) {
      setText(status, "");
      toast({ kind: "error", title: "Could not publish the test event", message: String(err.message || err) });
    } finally {
      publishButton.disabled = false;
    }
  });
}

updateCounts();
