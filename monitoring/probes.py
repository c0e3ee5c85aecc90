"""Read this host's resource usage with psutil. No Django imports.

CPU and network figures are rates between two readings; the previous reading is passed in (the
collector keeps it per host in Redis), so whichever process on the host takes the sample, the rate
covers exactly the time since the host's last sample.
"""

from __future__ import annotations

import os
import time

import psutil


def read(disk_path: str = "/") -> dict:
    """Raw counters and gauges now: cpu times, memory, disk, network, load."""
    cpu = psutil.cpu_times()
    net = psutil.net_io_counters()
    try:
        disk = psutil.disk_usage(disk_path).percent
    except OSError:
        disk = psutil.disk_usage("/").percent
    try:
        load = os.getloadavg()
    except (AttributeError, OSError):
        load = (None, None, None)
    # On Linux guest time is already counted in user time: leave it out of the total.
    total = sum(cpu) - getattr(cpu, "guest", 0.0) - getattr(cpu, "guest_nice", 0.0)
    busy = total - cpu.idle - getattr(cpu, "iowait", 0.0)
    return {
        "t": time.time(),
        "cpu_busy": busy,
        "cpu_total": total,
        "memory_percent": float(psutil.virtual_memory().percent),
        "disk_percent": float(disk),
        "net_bytes_sent": int(net.bytes_sent) if net else None,
        "net_bytes_recv": int(net.bytes_recv) if net else None,
        "load_1": load[0],
        "load_5": load[1],
        "load_15": load[2],
    }


def rates(now: dict, previous: dict | None) -> dict:
    """CPU percent and network bytes/s between two readings (CPU over a short blocking interval and
    no network rate when there is no previous reading, or it is from before a counter reset)."""
    out = {"cpu_percent": None, "net_sent_rate": None, "net_recv_rate": None}
    if previous:
        total = now["cpu_total"] - previous.get("cpu_total", 0)
        busy = now["cpu_busy"] - previous.get("cpu_busy", 0)
        if total > 0 and busy >= 0:
            out["cpu_percent"] = round(min(100.0, max(0.0, 100.0 * busy / total)), 2)
        elapsed = now["t"] - previous.get("t", now["t"])
        if elapsed > 0:
            for key, rate in (("net_bytes_sent", "net_sent_rate"), ("net_bytes_recv", "net_recv_rate")):
                if now.get(key) is not None and previous.get(key) is not None and now[key] >= previous[key]:
                    out[rate] = round((now[key] - previous[key]) / elapsed, 1)
    if out["cpu_percent"] is None:
        out["cpu_percent"] = float(psutil.cpu_percent(interval=0.2))
    return out
