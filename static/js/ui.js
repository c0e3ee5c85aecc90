// Small DOM helpers shared by every page: toasts, the connection indicator, badges, progress bars,
// formatting (times, bytes), fetch with CSRF, and morphing server-rendered fragments into the page.

import { Idiomorph } from "../vendor/idiomorph/idiomorph.esm.js";

const TOAST_TIMEOUT_MS = 5000;
const MAX_TOASTS = 5;
const KINDS = new Set(["success", "info", "warning", "error"]);

// --- toasts ----------------------------------------------------------------------------------------

function toastContainer() {
  return document.getElementById("toasts");
}

/**
 * toast({kind, title, message, sticky, timeout}) → the toast element.
 * kind: success | info | warning | error. Errors (and anything `sticky`) stay until closed;
 * the rest leave after `timeout` ms (5 s), paused while hovered or focused.
 */
export function toast({ kind = "info", title = "", message = "", sticky, timeout = TOAST_TIMEOUT_MS } = {}) {
  const container = toastContainer();
  if (!container) return null;
  kind = KINDS.has(kind) ? kind : "info";
  const el = newToastElement();
  el.dataset.kind = kind;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  el.querySelector(".toast__title").textContent = title;
  el.querySelector(".toast__message").textContent = message;
  const stays = sticky ?? kind === "error";
  container.append(el);
  wireToast(el, stays ? null : timeout);
  trimToasts(container);
  return el;
}

function newToastElement() {
  const template = document.getElementById("toast-template");
  if (template) return template.content.firstElementChild.cloneNode(true);
  const el = document.createElement("div");
  el.className = "toast";
  el.innerHTML =
    '<span class="toast__icon" aria-hidden="true"></span><div class="toast__body">' +
    '<p class="toast__title"></p><p class="toast__message"></p></div>' +
    '<button type="button" class="toast__close" aria-label="Dismiss notification">×</button>' +
    '<span class="toast__timer" aria-hidden="true"></span>';
  return el;
}

function wireToast(el, timeout) {
  el.querySelector(".toast__close")?.addEventListener("click", () => dismissToast(el));
  if (!timeout) {
    el.dataset.sticky = "true";
    return;
  }
  el.style.setProperty("--toast-timeout", `${timeout}ms`);
  let remaining = timeout;
  let startedAt = 0;
  let timer = null;
  const run = () => {
    startedAt = Date.now();
    timer = setTimeout(() => dismissToast(el), remaining);
    el.classList.remove("is-paused");
  };
  const pause = () => {
    if (!timer) return;
    clearTimeout(timer);
    timer = null;
    remaining = Math.max(500, remaining - (Date.now() - startedAt));
    el.classList.add("is-paused");
  };
  el.addEventListener("mouseenter", pause);
  el.addEventListener("mouseleave", () => timer || run());
  el.addEventListener("focusin", pause);
  el.addEventListener("focusout", () => timer || run());
  run();
}

export function dismissToast(el) {
  if (!el || el.classList.contains("is-leaving")) return;
  el.classList.add("is-leaving");
  const remove = () => el.remove();
  el.addEventListener("animationend", remove, { once: true });
  setTimeout(remove, 400); // when animations are off
}

function trimToasts(container) {
  const live = [...container.querySelectorAll(".toast:not(.is-leaving)")];
  let extra = live.length - MAX_TOASTS;
  // The oldest transient toasts go first; sticky ones only when there is nothing else.
  for (const el of live.filter((t) => !t.dataset.sticky).concat(live.filter((t) => t.dataset.sticky))) {
    if (extra <= 0) break;
    el.remove();
    extra -= 1;
  }
}

/** Toasts rendered by the server (Django messages) get the same close button and timer. */
export function initServerToasts() {
  const container = toastContainer();
  if (!container) return;
  for (const el of container.querySelectorAll(".toast")) {
    if (el.dataset.kind === "debug") el.dataset.kind = "info";
    wireToast(el, el.dataset.kind === "error" ? null : TOAST_TIMEOUT_MS);
  }
}

// --- connection indicator --------------------------------------------------------------------------

export const CONNECTION_LABELS = {
  connecting: "Connecting",
  connected: "Live",
  reconnecting: "Reconnecting",
  disconnected: "Offline",
  error: "Offline",
  max_reconnect_attempts: "Offline",
};

/** Render a realtime snapshot into the header's #connection element. */
export function renderConnection(el, snap) {
  if (!el) return;
  const label = CONNECTION_LABELS[snap.state] || "Offline";
  el.dataset.state = snap.state;
  el.dataset.quality = snap.state === "connected" && snap.quality ? snap.quality : "";
  setText(el.querySelector(".label"), label);
  let detail = "";
  if (snap.state === "connected" && snap.latency != null) detail = `${snap.latency} ms · ${snap.quality}`;
  else if (snap.state === "reconnecting") detail = `attempt ${snap.reconnectAttempts}/${snap.maxReconnectAttempts}`;
  setText(el.querySelector(".latency"), detail);
  const retry = el.querySelector(".connection__retry");
  if (retry) retry.hidden = snap.state !== "max_reconnect_attempts";
  el.title = connectionTitle(snap);
}

function connectionTitle(snap) {
  switch (snap.state) {
    case "connected":
      return snap.latency != null ? `Live connection · ${snap.latency} ms (${snap.quality})` : "Live connection";
    case "reconnecting":
      return `Connection lost · reconnect attempt ${snap.reconnectAttempts} of ${snap.maxReconnectAttempts}`;
    case "max_reconnect_attempts":
      return "Could not reconnect · showing updates every 30 s · Retry to try again now";
    case "disconnected":
      return "Paused while the tab was hidden";
    case "error":
      return "Connection error";
    default:
      return "Opening the live connection";
  }
}

/** The "Offline mode" banner: shown while the socket is down, with the last refresh time. */
export function renderOfflineBanner(el, snap) {
  if (!el) return;
  el.hidden = !snap.offline;
  if (!snap.offline) return;
  const time = el.querySelector("[data-last-refresh]");
  if (time && snap.lastRefreshAt) {
    const at = new Date(snap.lastRefreshAt);
    time.dateTime = at.toISOString();
    setText(time, formatTime(at));
  }
}

// --- widgets kept up to date by pages -------------------------------------------------------------

/** Update a status badge (templates/includes/status_badge.html). */
export function setStatusBadge(el, status, label) {
  if (!el) return;
  el.dataset.status = status || "unknown";
  setText(el, label ?? humanize(status || "unknown"));
}

/** The pct-N class (static/css/app.css) that sets a bar's width: the CSP allows no style= attribute. */
export function pctClass(value) {
  return `pct-${Math.round(Math.max(0, Math.min(100, Number(value) || 0)))}`;
}

function setPct(el, value) {
  if (!el) return;
  el.classList.remove(...[...el.classList].filter((c) => /^pct-\d+$/.test(c)));
  el.classList.add(pctClass(value));
}

/** Update a progress bar (templates/includes/progress_bar.html): value 0-100. */
export function setProgress(el, value, status) {
  if (!el) return;
  const v = Math.max(0, Math.min(100, Number(value) || 0));
  el.setAttribute("aria-valuenow", String(Math.round(v)));
  if (status) el.dataset.status = status;
  setPct(el.querySelector(".progress__fill"), v);
  setText(el.querySelector(".progress__value"), `${Math.round(v)}%`);
}

// --- formatting ------------------------------------------------------------------------------------

export function humanize(text) {
  const s = String(text).replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export function formatTime(date, { ms = false } = {}) {
  const d = date instanceof Date ? date : new Date(date);
  if (Number.isNaN(d.getTime())) return "—";
  const hms = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return ms ? `${hms}.${String(d.getMilliseconds()).padStart(3, "0")}` : hms;
}

export function formatPercent(value, digits = 1) {
  if (value == null || Number.isNaN(Number(value))) return "—";
  const n = Number(value);
  return `${(n <= 1 ? n * 100 : n).toFixed(digits)}%`;
}

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const RELATIVE_UNITS = [
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
];

/** "just now", "3 minutes ago", "yesterday": how long ago `date` (a Date or an ISO string) was. */
export function relativeTime(date, now = Date.now()) {
  const t = date instanceof Date ? date.getTime() : Date.parse(date);
  if (Number.isNaN(t)) return "—";
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 45) return "just now";
  for (const [unit, size] of RELATIVE_UNITS) {
    if (s >= size) return RELATIVE.format(-Math.round(s / size), unit);
  }
  return RELATIVE.format(-1, "minute");
}

/** Refresh every `<time data-relative datetime=...>` under `root`. */
export function refreshRelativeTimes(root = document) {
  for (const el of root.querySelectorAll("time[data-relative]")) {
    if (el.dateTime) setText(el, relativeTime(el.dateTime));
  }
}

/** 1536 → "1.5 KB"; with `perSecond`, "1.5 KB/s". */
export function formatBytes(bytes, { perSecond = false } = {}) {
  const suffix = perSecond ? "/s" : "";
  if (bytes == null || Number.isNaN(Number(bytes))) return "—";
  const n = Number(bytes);
  if (Math.abs(n) < 1024) return `${Math.round(n)} B${suffix}`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = n / 1024;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(Math.abs(value) < 100 || perSecond ? 1 : 0)} ${units[unit]}${suffix}`;
}

export function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

// --- CSRF for fetch() -------------------------------------------------------------------------------

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
}

/** GET JSON with the session cookie; returns {ok, status, body}. */
export async function getJSON(url) {
  return sendJSON(url, { method: "GET" });
}

/** POST (or, with `method`, PUT / PATCH / DELETE) JSON with the session cookie and the CSRF token; returns {ok, status, body}. */
export async function postJSON(url, data, { method = "POST" } = {}) {
  return sendJSON(url, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: data === undefined ? undefined : JSON.stringify(data),
  });
}

async function sendJSON(url, { method, headers = {}, body: payload }) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", ...headers },
    body: payload,
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* no JSON body */
  }
  return { ok: response.ok, status: response.status, body };
}

// --- server-rendered fragments ----------------------------------------------------------------------

/** Parse one element of server-rendered HTML (a table row, a list item, a card). */
export function parseFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

// Whether a dialog or a <details> is open is the user's state, not the server's.
const USER_OPENED = new Set(["DIALOG", "DETAILS"]);
function keepUserState(attribute, element) {
  return !(attribute === "open" && USER_OPENED.has(element.tagName));
}

/**
 * Morph `target` into the element rendered in `html` (idiomorph keeps focus, scroll and open
 * details where the markup allows). Without a target, the new element is returned for the caller
 * to place. Returns the element now in the page, or null when the HTML holds no element.
 */
export function morph(target, html) {
  const fresh = typeof html === "string" ? parseFragment(html) : html;
  if (!fresh) return null;
  if (!target) return fresh;
  Idiomorph.morph(target, fresh, { morphStyle: "outerHTML", callbacks: { beforeAttributeUpdated: keepUserState } });
  return target.isConnected ? target : null;
}

/** Restart the "is-new" highlight of an element (a row inserted or changed live). */
export function flash(el) {
  el.classList.remove("is-new");
  void el.offsetWidth; // restart the animation
  el.classList.add("is-new");
  setTimeout(() => el.classList.remove("is-new"), 1400);
}

/** Insert `row` into `tbody` newest first: before the first row whose `key` data attribute is smaller. */
export function insertNewestFirst(tbody, row, key) {
  const id = Number(row.dataset[key]);
  const next = [...tbody.rows].find((r) => Number(r.dataset[key]) < id);
  tbody.insertBefore(row, next || null);
}

async function fetchFragment(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok) return { status: response.status, element: null };
  return { status: response.status, element: parseFragment(await response.text()) };
}

/**
 * Fetch a fragment view (a Django view rendering one include) and morph it into `target`, or,
 * when the page does not show it yet, hand it to `place(element)`. Returns the element, or null
 * when the server answered with an error.
 */
export async function refreshFragment(url, target, place = null) {
  const { element } = await fetchFragment(url);
  if (!element) return null;
  if (target?.isConnected) return morph(target, element);
  place?.(element);
  return element;
}

/**
 * A live list of server-rendered items (table rows, cards) keyed by id:
 *   const runs = liveFragments({ url: (id) => `/pipelines/runs/${id}/row/`, find: (id) => ..., place: (el) => ... });
 *   runs.refresh(id);   // on any event about item `id`
 * Each refresh fetches the item's fragment and morphs it in (or places it when new; new items are
 * highlighted). A 404 means the item is gone or no longer visible: `gone(id, element)`. Events that
 * arrive while a fetch is in flight coalesce into one more fetch, so the page ends on the latest state.
 * `onUpdate(element, id)` runs after each change.
 */
export function liveFragments({ url, find, place, gone = (id, el) => el?.remove(), onUpdate = null }) {
  const inFlight = new Map(); // id → whether another refresh was asked for meanwhile
  async function update(id, { highlight = false } = {}) {
    const { status, element } = await fetchFragment(url(id));
    const current = find(id);
    if (status === 404) return gone(id, current);
    if (!element) return;
    let el = element;
    if (current?.isConnected) el = morph(current, element);
    else place(element);
    if (!el) return;
    if (highlight || !current) flash(el);
    if (el.isConnected) refreshRelativeTimes(el);
    if (onUpdate) onUpdate(el, id);
  }
  async function refresh(id, options) {
    const key = String(id);
    if (inFlight.has(key)) {
      inFlight.set(key, true);
      return;
    }
    inFlight.set(key, false);
    try {
      await update(id, options);
    } catch (err) {
      console.warn("could not refresh", url(id), err);
    } finally {
      const again = inFlight.get(key);
      inFlight.delete(key);
      if (again) refresh(id);
    }
  }
  return { refresh };
}

/**
 * One element the server renders whole (a list, a table body), found by its id: returns
 * `refresh()`, which fetches `url` and morphs the answer into the element. Calls during a fetch
 * coalesce into one more fetch. `onUpdate(element)` runs after each change.
 */
export function liveElement(url, id, onUpdate = null) {
  const find = () => document.getElementById(id);
  const element = liveFragments({ url: () => url, find, place: () => {}, gone: () => {}, onUpdate });
  return () => element.refresh(id);
}
