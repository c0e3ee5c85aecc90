"""Celery workers run below the web servers' CPU priority (WORKER_NICE), so that on a shared machine
sockets and API calls do not wait for a core behind training jobs."""

from __future__ import annotations

from pathlib import Path

import psutil
from django.conf import settings


def test_workers_and_their_pool_run_below_the_servers(server, worker):
    assert settings.WORKER_NICE == 10
    main = psutil.Process(worker.proc.pid)
    pool = main.children(recursive=True)
    assert pool, "a prefork worker has pool processes"
    assert main.nice() == 10 and all(child.nice() == 10 for child in pool)
    assert psutil.Process(server.proc.pid).nice() == 0
    # Linux shares CPU between sessions before nice counts: a worker leading its own session lowers
    # its session's group too, else its nice would only order it against itself.
    autogroup = Path(f"/proc/{worker.proc.pid}/autogroup")
    if autogroup.exists() and Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1":
        assert autogroup.read_text().split()[-1] == "10"
        assert Path(f"/proc/{server.proc.pid}/autogroup").read_text().split()[-1] == "0"
