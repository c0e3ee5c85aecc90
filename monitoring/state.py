"""Monitoring's working state in Redis: what every process must agree on, and what may be lost.

The database keeps what people look back at (samples, alerts, anomalies); Redis keeps the moving
parts: which process took a host's last sample (a lock per host), each process's live figures (open
sockets, API timings, ping round trips, under keys with a TTL), each host's health and the system's,
the components' last statuses, the streaming anomaly windows, how long a rule's condition has held,
the workers seen, and how jobs' progress has been moving. Losing all of it costs a few samples of
warm-up, nothing else.

Every key starts with `<REDIS_KEY_PREFIX>:monitoring:`.
"""

from __future__ import annotations

import json
import os
import socket
import time

from django.conf import settings

from mlops_dashboard.events import bus

from mlops_dashboard import runtime


def key(*parts) -> str:
    return ":".join([settings.REDIS_KEY_PREFIX, "monitoring", *map(str, parts)])


def client():
    return bus.sync_client()


def host_name() -> str:
    return settings.MONITORING_HOST or socket.gethostname()


def _loads(raw, default=None):
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return default


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def fresh_seconds() -> float:
    """A host or process not heard from for this long is gone."""
    return 3.0 * max(1, settings.MONITORING_INTERVAL)


# --- locks ------------------------------------------------------------------------------------------


def try_lock(name: str, seconds: float) -> bool:
    """Take a lock for `seconds` unless another process holds it (SET NX PX)."""
    ms = max(100, int(seconds * 1000))
    return bool(client().set(key("lock", name), os.getpid(), nx=True, px=ms))


def release_lock(name: str) -> None:
    client().delete(key("lock", name))


def try_sample_lock(host: str) -> bool:
    """One sample per host per interval, whichever process on the host asks first."""
    return try_lock(f"sample:{host}", settings.MONITORING_INTERVAL * 0.9)


# --- each process's live figures ------------------------------------------------------------------


def process_report(role: str, snapshot: dict | None = None) -> None:
    snapshot = snapshot or runtime.snapshot()
    host = host_name()
    member = f"{host}:{snapshot['pid']}"
    payload = {**snapshot, "role": role, "host": host, "at": time.time()}
    pipe = client().pipeline(transaction=False)
    pipe.set(key("proc", member), _dumps(payload), ex=max(2, int(fresh_seconds())))
    pipe.sadd(key("procs"), member)
    pipe.execute()


def process_forget(pid: int | None = None) -> None:
    member = f"{host_name()}:{pid or os.getpid()}"
    pipe = client().pipeline(transaction=False)
    pipe.delete(key("proc", member))
    pipe.srem(key("procs"), member)
    pipe.execute()


def process_stats() -> dict:
    """Across every live process: open sockets, API p95, socket round-trip p95, ASGI processes."""
    c = client()
    members = sorted(m.decode() for m in c.smembers(key("procs")))
    values = c.mget([key("proc", m) for m in members]) if members else []
    gone = [m for m, v in zip(members, values) if v is None]
    if gone:
        c.srem(key("procs"), *gone)
    processes = [p for p in (_loads(v) for v in values if v is not None) if p]
    asgi = [p for p in processes if p.get("role") == "asgi"]
    api = [v for p in processes for v in p.get("api_ms", [])]
    ws = [v for p in processes for v in p.get("ws_rtt_ms", [])]
    p95 = runtime.percentile
    return {
        "processes": processes,
        "asgi_processes": len(asgi),
        "active_connections": sum(int(p.get("connections", 0)) for p in asgi),
        "api_response_time_ms": round(p95(api, 95), 2) if api else None,
        "api_requests": len(api),
        "ws_response_time_ms": round(p95(ws, 95), 2) if ws else None,
        "ws_pings": len(ws),
    }


# --- per-host readings, latest payloads and health -------------------------------------------------


def probe_swap(host: str, reading: dict) -> dict | None:
    """Store this host's probe reading; return the previous one (for CPU and network rates)."""
    raw = client().set(key("probe", host), _dumps(reading), ex=3600, get=True)
    return _loads(raw)


def latest_set(host: str, payload: dict) -> None:
    client().hset(key("latest"), host, _dumps({**payload, "at": time.time()}))


def project_figures_set(project_id: int, payload: dict) -> None:
    """A project's last `project_metrics` payload (the dashboard's first render reads it)."""
    client().hset(key("project_figures"), str(project_id), _dumps({**payload, "at": time.time()}))


def project_figures_get(project_id: int) -> dict | None:
    return _loads(client().hget(key("project_figures"), str(project_id)))


def latest_all(*, fresh_only: bool = False) -> list[dict]:
    now = time.time()
    rows = []
    for host, raw in sorted(client().hgetall(key("latest")).items()):
        payload = _loads(raw)
        if not payload:
            continue
        payload["stale"] = now - payload.get("at", 0) > fresh_seconds()
        if fresh_only and payload["stale"]:
            continue
        rows.append(payload)
    return rows


def host_health_get(host: str) -> dict:
    return _loads(client().hget(key("health", "hosts"), host), {}) or {}


def host_health_set(host: str, value: dict) -> None:
    client().hset(key("health", "hosts"), host, _dumps({**value, "at": time.time()}))


def host_health_all(*, fresh_only: bool = True) -> dict[str, dict]:
    now = time.time()
    out = {}
    for host, raw in client().hgetall(key("health", "hosts")).items():
        value = _loads(raw)
        if value and (not fresh_only or now - value.get("at", 0) <= fresh_seconds()):
            out[host.decode()] = value
    return out


def health_overall_get() -> dict | None:
    return _loads(client().get(key("health", "overall")))


def health_overall_swap(value: dict) -> dict | None:
    """Store the system's health; return what it was (atomically: one process sees each change)."""
    return _loads(client().set(key("health", "overall"), _dumps(value), get=True))


# --- components -------------------------------------------------------------------------------------


def components_swap(statuses: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """Store each component's status; return {name: (previous, new)} for those that changed."""
    c = client()
    pipe = c.pipeline(transaction=True)
    pipe.hgetall(key("components"))
    if statuses:
        pipe.hset(key("components"), mapping=statuses)
    previous = {k.decode(): v.decode() for k, v in pipe.execute()[0].items()}
    return {name: (previous.get(name), status) for name, status in statuses.items() if previous.get(name) != status}


def components_get() -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client().hgetall(key("components")).items()}


def services_set(result: dict) -> None:
    client().set(key("services"), _dumps(result))


def services_get() -> dict | None:
    return _loads(client().get(key("services")))


def mark(name: str) -> None:
    client().set(key("mark", name), time.time(), ex=86400)


def seconds_since(name: str) -> float | None:
    raw = client().get(key("mark", name))
    return None if raw is None else max(0.0, time.time() - float(raw))


# --- streaming anomaly windows ------------------------------------------------------------------------


def windows_push(host: str, values: dict[str, float]) -> dict[str, list[float]]:
    """Append each value to its series' window; return each window as it was before (oldest first)."""
    size = max(3, settings.MONITORING_ANOMALY_WINDOW)
    metrics = [m for m, v in values.items() if v is not None]
    if not metrics:
        return {}
    pipe = client().pipeline(transaction=True)
    for metric in metrics:
        pipe.lrange(key("window", host, metric), 0, -1)
    for metric in metrics:
        k = key("window", host, metric)
        pipe.rpush(k, repr(float(values[metric])))
        pipe.ltrim(k, -size, -1)
        pipe.expire(k, 86400)
    results = pipe.execute()
    return {metric: [float(v) for v in results[i]] for i, metric in enumerate(metrics)}


def anomaly_gate(series: str, rank: int, cooldown: int) -> bool:
    """Whether an anomaly of this rank may be recorded for the series now: one per cooldown, unless
    it is more severe than the last one recorded."""
    c = client()
    k = key("anomaly-gate", series)
    current = c.get(k)
    if current is not None and int(current) >= rank:
        return False
    c.set(k, rank, ex=max(1, cooldown))
    return True


# --- rule conditions, workers, jobs -------------------------------------------------------------------


def condition_since(rule: str, subject: str, now: float) -> float:
    """When this rule's condition started holding for the subject (now, if it just did)."""
    c = client()
    k = key("since", rule, subject)
    c.set(k, now, nx=True, ex=7 * 86400)
    raw = c.get(k)
    return float(raw) if raw is not None else now


def condition_clear(rule: str, subject: str) -> None:
    client().delete(key("since", rule, subject))


def workers_seen(names: list[str], now: float) -> dict[str, float]:
    """Record the workers that answered now; return every known worker's last-seen time."""
    c = client()
    if names:
        c.hset(key("workers"), mapping={n: now for n in names})
    return {k.decode(): float(v) for k, v in c.hgetall(key("workers")).items()}


def worker_forget(name: str) -> None:
    client().hdel(key("workers"), name)


def job_progress_track(subject: str, marker: str, now: float, default_interval: float) -> dict:
    """Follow a running job's progress: when its marker (progress and step) last changed, and its usual
    interval between changes (a moving average). Returns {changed_at, interval, changes}."""
    c = client()
    k = key("jobs")
    state = _loads(c.hget(k, subject)) or {}
    if state.get("marker") != marker:
        if "changed_at" in state:
            gap = now - state["changed_at"]
            n = state.get("changes", 0)
            previous = state.get("interval")
            state["interval"] = gap if previous is None else (0.7 * previous + 0.3 * gap)
            state["changes"] = n + 1
        state["marker"] = marker
        state["changed_at"] = now
        c.hset(k, subject, _dumps(state))
    state.setdefault("interval", None)
    state.setdefault("changes", 0)
    if state["interval"] is None:
        state["usual"] = float(default_interval)
    else:
        state["usual"] = float(state["interval"])
    return state


def jobs_forget_except(subjects: set[str]) -> None:
    c = client()
    k = key("jobs")
    gone = [s for s in (f.decode() for f in c.hkeys(k)) if s not in subjects]
    if gone:
        c.hdel(k, *gone)


def predictions_rate(total: int, now: float, *, project_id: int | None = None) -> float:
    """Predictions per minute from a project's total (all its model versions), over about the last minute."""
    c = client()
    k = key("predictions" if project_id is None else f"predictions:{project_id}")
    pipe = c.pipeline(transaction=True)
    pipe.zadd(k, {f"{now:.3f}:{total}": now})
    pipe.zremrangebyscore(k, "-inf", now - 90)
    pipe.zrangebyscore(k, now - 75, "+inf", start=0, num=1, withscores=True)
    pipe.expire(k, 3600)
    oldest = pipe.execute()[2]
    if not oldest:
        return 0.0
    member, at = oldest[0]
    old_total = int(member.decode().split(":")[1])
    elapsed = now - at
    if elapsed < 1 or total < old_total:
        return 0.0
    return round((total - old_total) * 60.0 / elapsed, 2)
