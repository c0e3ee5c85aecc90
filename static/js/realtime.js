// The one live-connection client every page uses.
//
//   import { realtime } from "/static/js/realtime.js";
//   realtime.on("training_progress", (event) => ...);      // or "*" for every event
//   realtime.subscribe(["training_job.12"]);               // object topics, re-sent after reconnects
//   realtime.onState((snapshot) => ...);                   // state, latency, quality, attempts...
//   realtime.onResync(() => reloadMyData());               // after a replay gap (else: page reload)
//
// It connects to `ws(s)://<host><wsPath>?last_event_id=<last seen id>`, so the server replays what
// this page missed (between the render and the socket's open, or while disconnected), and drops any
// event whose id is not above the last one seen. While the socket is down it polls the event log
// API (with the page's object topics, so it gets what the socket would), and the same dispatch path
// delivers those events.

export const STATES = Object.freeze({
  CONNECTING: "connecting", // first connect of the page
  CONNECTED: "connected",
  DISCONNECTED: "disconnected", // closed on purpose (hidden tab, stop())
  RECONNECTING: "reconnecting",
  ERROR: "error",
  MAX_RECONNECT_ATTEMPTS: "max_reconnect_attempts",
});
const OFFLINE = new Set([STATES.DISCONNECTED, STATES.RECONNECTING, STATES.ERROR, STATES.MAX_RECONNECT_ATTEMPTS]);

const DEFAULTS = {
  backoffBaseMs: 1000,
  backoffMaxMs: 30000,
  maxReconnectAttempts: 10,
  pingIntervalMs: 15000,
  pongTimeoutMs: 10000, // no pong this long after a ping: the connection is dead, reconnect
  pollIntervalMs: 30000,
  pollLimit: 1000,
  hiddenCloseMs: 60000,
  resyncReloadDelayMs: 1500,
  stableAfterMs: 5000, // a socket open this long resets the attempt counter
};

export function qualityFor(latencyMs) {
  if (latencyMs == null || Number.isNaN(latencyMs)) return null;
  if (latencyMs < 50) return "excellent";
  if (latencyMs < 150) return "good";
  if (latencyMs < 300) return "fair";
  return "poor";
}

export function backoffDelay(attempt, baseMs, maxMs, random = Math.random) {
  // attempt 1 → ~base, doubling up to the cap; ±25 % jitter spreads a crowd of reconnecting tabs.
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(Math.min(maxMs, exp * (0.75 + random() * 0.5)));
}

function readConfig() {
  const el = document.getElementById("realtime-config");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent);
  } catch {
    return null;
  }
}

function safeSessionStorage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled
  }
}

function readOverrides() {
  // Tests shorten timings with Playwright's add_init_script; never set in production.
  const o = window.__realtimeTestOverrides;
  return o && typeof o === "object" ? o : {};
}

export class RealtimeClient {
  constructor(config, options = {}) {
    this.config = config || {};
    this.options = { ...DEFAULTS, ...options };
    this.enabled = Boolean(config && config.wsPath);
    this.state = STATES.DISCONNECTED;
    this.lastEventId = Number(this.config.lastEventId) || 0;
    this.latency = null;
    this.quality = null;
    this.reconnectAttempts = 0;
    this.reconnects = 0; // successful re-connections since the page loaded
    this.eventsReceived = 0;
    this.duplicatesDropped = 0;
    this.lastEventAt = null;
    this.connectedAt = null;
    this.nextRetryAt = null;
    this.offlineSince = null;
    this.lastRefreshAt = null; // last time offline polling brought the page up to date
    this.lastPollError = null;
    this.transport = "websocket";

    this._handlers = new Map();
    this._stateHandlers = new Set();
    this._resyncHandlers = new Set();
    this._topics = new Set();
    this._ws = null;
    this._everConnected = false;
    this._suspended = false; // closed because the tab is hidden
    this._unloading = false;
    this._polling = false;
    this._timers = {};
    this._started = false;
  }

  // --- public API ------------------------------------------------------------------------------

  start() {
    if (!this.enabled || this._started) return this;
    this._started = true;
    document.addEventListener("visibilitychange", () => this._onVisibility());
    window.addEventListener("online", () => this._onBrowserOnline());
    window.addEventListener("pagehide", () => {
      this._unloading = true;
    });
    window.addEventListener("pageshow", (e) => {
      if (e.persisted) {
        this._unloading = false;
        this.retry();
      }
    });
    this._setState(STATES.CONNECTING);
    this._open();
    return this;
  }

  /** Close the socket and stop reconnecting and polling. */
  stop() {
    this._closeSocket();
    this._clearTimer("reconnect");
    this._setState(STATES.DISCONNECTED);
    this._stopPolling();
  }

  /** Reconnect now, with a fresh attempt budget (the indicator's Retry button). */
  retry() {
    if (!this.enabled) return;
    this._suspended = false;
    this.reconnectAttempts = 0;
    this._clearTimer("reconnect");
    if (this._ws) return;
    this._setState(this._everConnected ? STATES.RECONNECTING : STATES.CONNECTING);
    this._open();
  }

  /** on(type | "*", handler) → a function that removes the handler. handler(event, {source}). */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    const set = this._handlers.get(type);
    if (!set) return;
    if (handler) set.delete(handler);
    else set.clear();
  }

  /** onState(handler): called now and on every change of state, latency or counters. */
  onState(handler) {
    this._stateHandlers.add(handler);
    this._safe(handler, this.snapshot());
    return () => this._stateHandlers.delete(handler);
  }

  /** A page that can reload its own data registers here; without one, a resync reloads the page. */
  onResync(handler) {
    this._resyncHandlers.add(handler);
    return () => this._resyncHandlers.delete(handler);
  }

  subscribe(topics) {
    const added = [].concat(topics).filter((t) => !this._topics.has(t));
    added.forEach((t) => this._topics.add(t));
    if (added.length) this._send({ type: "subscribe", topics: added });
  }

  unsubscribe(topics) {
    const removed = [].concat(topics).filter((t) => this._topics.has(t));
    removed.forEach((t) => this._topics.delete(t));
    if (removed.length) this._send({ type: "unsubscribe", topics: removed });
  }

  get topics() {
    return [...this._topics];
  }

  get isOffline() {
    return OFFLINE.has(this.state);
  }

  snapshot() {
    return {
      state: this.state,
      latency: this.latency,
      quality: this.quality,
      reconnectAttempts: this.reconnectAttempts,
      maxReconnectAttempts: this.options.maxReconnectAttempts,
      pingIntervalMs: this.options.pingIntervalMs,
      reconnects: this.reconnects,
      nextRetryAt: this.nextRetryAt,
      lastEventId: this.lastEventId,
      lastEventAt: this.lastEventAt,
      eventsReceived: this.eventsReceived,
      duplicatesDropped: this.duplicatesDropped,
      connectedAt: this.connectedAt,
      offline: this.isOffline,
      offlineSince: this.offlineSince,
      lastRefreshAt: this.lastRefreshAt,
      lastPollError: this.lastPollError,
      transport: this.transport,
      topics: this.topics,
    };
  }

  socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(this.config.wsPath, `${scheme}//${location.host}`);
    url.protocol = scheme;
    url.searchParams.set("last_event_id", String(this.lastEventId));
    // The object topics it follows, joined before the replay: a reconnect gets what it missed on them too.
    if (this._topics.size) url.searchParams.set("topics", this.topics.join(","));
    return url.toString();
  }

  // --- socket --------------------------------------------------------------------------------------

  _open() {
    this._clearTimer("reconnect");
    this.nextRetryAt = null;
    if (this._ws) return;
    let ws;
    try {
      ws = new WebSocket(this.socketUrl());
    } catch (err) {
      this._log("cannot open socket", err);
      this._setState(STATES.ERROR);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      if (this._everConnected) this.reconnects += 1;
      this._everConnected = true;
      this.connectedAt = Date.now();
      this.transport = "websocket";
      if (this._topics.size) this._send({ type: "subscribe", topics: this.topics });
      this._startPing();
      this._setState(STATES.CONNECTED);
      this._setTimer("stable", this.options.stableAfterMs, () => {
        this.reconnectAttempts = 0;
        this._notify();
      });
    };
    ws.onmessage = (message) => {
      if (this._ws === ws) this._onMessage(message.data);
    };
    ws.onerror = () => {
      if (this._ws === ws) this._setState(STATES.ERROR);
    };
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._onSocketGone(event.code);
    };
  }

  _closeSocket() {
    const ws = this._ws;
    this._ws = null;
    this._stopPing();
    this._clearTimer("stable");
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
  }

  _onSocketGone(code) {
    this._stopPing();
    this._clearTimer("stable");
    this.connectedAt = null;
    if (this._unloading || this.state === STATES.DISCONNECTED) return;
    if (code === 4401) return this._toLogin();
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    this._clearTimer("reconnect");
    if (this._suspended) return;
    if (this.reconnectAttempts >= this.options.maxReconnectAttempts) {
      this.nextRetryAt = null;
      this._setState(STATES.MAX_RECONNECT_ATTEMPTS);
      return;
    }
    this.reconnectAttempts += 1;
    const delay = backoffDelay(this.reconnectAttempts, this.options.backoffBaseMs, this.options.backoffMaxMs);
    this.nextRetryAt = Date.now() + delay;
    this._setState(STATES.RECONNECTING);
    this._log(`reconnect attempt ${this.reconnectAttempts} in ${delay} ms`);
    this._setTimer("reconnect", delay, () => this._open());
  }

  _send(message) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  // --- heartbeat -----------------------------------------------------------------------------------

  _startPing() {
    this._stopPing();
    this._ping();
    this._timers.ping = setInterval(() => this._ping(), this.options.pingIntervalMs);
  }

  _stopPing() {
    clearInterval(this._timers.ping);
    this._clearTimer("pong");
  }

  _ping() {
    // The last measured round trip rides along, so the server can report ws_response_time_ms.
    const ping = { type: "ping", ts: Date.now() };
    if (this.latency != null) ping.rtt = this.latency;
    if (!this._send(ping)) return;
    if (!this._timers.pong) {
      this._setTimer("pong", this.options.pongTimeoutMs, () => {
        this._log("no pong: dropping the socket");
        this._closeSocket();
        this._onSocketGone(4000);
      });
    }
  }

  _onPong(event) {
    this._clearTimer("pong");
    if (typeof event.ts === "number") {
      this.latency = Math.max(0, Math.round(Date.now() - event.ts));
      this.quality = qualityFor(this.latency);
      this._notify();
    }
  }

  // --- incoming events -----------------------------------------------------------------------------

  _onMessage(text) {
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      this._log("ignored a non-JSON frame");
      return;
    }
    if (!event || typeof event.type !== "string") return;
    if (event.type === "pong") this._onPong(event);
    this._dispatch(event, "socket");
    if (event.type === "error") this._onServerError(event);
  }

  _onServerError(event) {
    this._log("server error", event.code, event.message);
    if (event.code === "unauthorized") {
      this._toLogin();
    } else if (event.code === "replay_gap") {
      if (typeof event.latest_id === "number") this.lastEventId = Math.max(this.lastEventId, event.latest_id);
      this._resync("replay_gap");
    }
  }

  /** The one path every event takes, from the socket or from polling: dedupe, then handlers. */
  _dispatch(event, source) {
    if (typeof event.id === "number") {
      if (event.id <= this.lastEventId) {
        this.duplicatesDropped += 1;
        return false;
      }
      this.lastEventId = event.id;
      this.lastEventAt = Date.now();
      this.eventsReceived += 1;
    }
    const meta = { source };
    // Heartbeats go to "pong" handlers only: "*" is for things that happened.
    for (const key of event.type === "pong" ? ["pong"] : [event.type, "*"]) {
      const set = this._handlers.get(key);
      if (set) for (const handler of [...set]) this._safe(handler, event, meta);
    }
    if (typeof event.id === "number") this._notifySoon();
    return true;
  }

  _resync(reason) {
    const note = { type: "resync", id: null, timestamp: new Date().toISOString(), reason, latest_id: this.lastEventId };
    this._dispatch(note, "client");
    if (this._resyncHandlers.size) {
      for (const handler of [...this._resyncHandlers]) this._safe(handler, note);
      return;
    }
    // No page handler: reload, unless we just did (a reload loop helps nobody).
    const key = "realtime:resync-reload";
    const store = safeSessionStorage();
    const last = Number(store?.getItem(key)) || 0;
    if (Date.now() - last < 10000) return;
    setTimeout(() => {
      store?.setItem(key, String(Date.now()));
      location.reload();
    }, this.options.resyncReloadDelayMs);
  }

  _toLogin() {
    this._unloading = true;
    this._closeSocket();
    this._clearTimer("reconnect");
    this._stopPolling();
    const login = document.body?.dataset.loginUrl || "/login/";
    const next = encodeURIComponent(location.pathname + location.search).replace(/%2F/gi, "/"); // as Django does
    location.assign(`${login}?next=${next}`);
  }

  // --- offline polling -----------------------------------------------------------------------------

  _startPolling() {
    if (this._timers.poll || !this.config.eventsApi || this._suspended) return;
    this.transport = "polling";
    this._timers.poll = setInterval(() => this.poll(), this.options.pollIntervalMs);
  }

  _stopPolling() {
    clearInterval(this._timers.poll);
    this._timers.poll = null;
  }

  /** Fetch what the log holds after the last seen id and deliver it. Also callable by pages. */
  async poll() {
    if (this._polling || document.visibilityState === "hidden") return;
    this._polling = true;
    try {
      for (let page = 0; page < 20; page += 1) {
        const url = new URL(this.config.eventsApi, location.origin);
        url.searchParams.set("after", String(this.lastEventId));
        url.searchParams.set("limit", String(this.options.pollLimit));
        // The object topics this page follows, as the socket would: the server checks each one.
        if (this._topics.size) url.searchParams.set("topics", this.topics.join(","));
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.status === 401 || response.status === 403) return this._toLogin();
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const body = await response.json();
        if (body.gap) {
          this.lastEventId = Math.max(this.lastEventId, Number(body.latest_id) || 0);
          this._resync("poll_gap");
          break;
        }
        // Topics the server refused (an object gone, or a project left): not asked for again.
        for (const topic of body.refused_topics || []) this._topics.delete(topic);
        for (const event of body.events || []) this._dispatch(event, "poll");
        if (typeof body.next_after === "number") this.lastEventId = Math.max(this.lastEventId, body.next_after);
        if (!body.has_more) break;
      }
      this.lastRefreshAt = Date.now();
      this.lastPollError = null;
    } catch (err) {
      this.lastPollError = String(err && err.message ? err.message : err);
      this._log("poll failed", this.lastPollError);
    } finally {
      this._polling = false;
      this._notify();
    }
  }

  // --- page visibility and the network -------------------------------------------------------------

  _onVisibility() {
    if (document.visibilityState === "hidden") {
      this._setTimer("hidden", this.options.hiddenCloseMs, () => this._suspend());
      return;
    }
    this._clearTimer("hidden");
    if (this._suspended) {
      this._log("tab visible again: reconnecting with replay");
      this._suspended = false;
      this.reconnectAttempts = 0;
      this._setState(STATES.RECONNECTING);
      this._open();
    }
  }

  _suspend() {
    this._suspended = true;
    this._closeSocket();
    this._clearTimer("reconnect");
    this.nextRetryAt = null;
    this._setState(STATES.DISCONNECTED);
  }

  _onBrowserOnline() {
    if (this.isOffline && !this._suspended && !this._ws) this.retry();
  }

  // --- state and helpers ---------------------------------------------------------------------------

  _setState(state) {
    const changed = state !== this.state;
    this.state = state;
    if (OFFLINE.has(state)) {
      if (this.offlineSince == null) {
        this.offlineSince = Date.now();
        // Until the first poll, the page is as fresh as the moment the socket went away.
        this.lastRefreshAt = this.lastRefreshAt ?? Date.now();
      }
      // A hidden tab polls nobody's screen: it catches up by replay when shown again.
      if (this._suspended) this._stopPolling();
      else this._startPolling();
    } else {
      this.offlineSince = null;
      this.lastRefreshAt = null;
      this._stopPolling();
      if (state === STATES.CONNECTED) this.transport = "websocket";
    }
    if (changed) this._log("state", state);
    this._notify();
  }

  /** Counters changed: tell state handlers at most every 100 ms (a burst of events is one render). */
  _notifySoon() {
    if (this._timers.notify) return;
    this._timers.notify = setTimeout(() => this._notify(), 100);
  }

  _notify() {
    this._clearTimer("notify");
    if (!this._stateHandlers.size) return;
    const snap = this.snapshot();
    for (const handler of [...this._stateHandlers]) this._safe(handler, snap);
  }

  _setTimer(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = setTimeout(() => {
      this._timers[name] = null;
      fn();
    }, ms);
  }

  _clearTimer(name) {
    clearTimeout(this._timers[name]);
    this._timers[name] = null;
  }

  _safe(fn, ...args) {
    try {
      fn(...args);
    } catch (err) {
      console.error("realtime handler failed", err);
    }
  }

  _log(...args) {
    if (this.config.debug) console.debug("[realtime]", ...args);
  }
}

export const realtime = new RealtimeClient(readConfig(), readOverrides());
if (realtime.config.debug) window.__realtime = realtime;
export default realtime;
