"""`make run` (scripts/run_stack.py) stops everything it started, however it is stopped: SIGINT to its
process group (Ctrl-C in a terminal), SIGTERM to the group (systemd, a container runtime) and SIGHUP
(the terminal closed). Each run is a real stack: a private redis-server, uvicorn, a Celery worker and
beat, and the demo plant's sender (telemetry_demo), on a SQLite file and static files of its own."""

import os
import signal
import subprocess
import sys

import httpx
import psutil
import pytest

from tests import procs

START_DEADLINE = 400  # migrations on a fresh database, static files, then four processes, on a loaded machine
STOP_DEADLINE = 120


def start_stack(tmp_path):
    port = procs.free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "CELERY_BROKER_URL")}
    env.update(
        # A Redis URL nobody answers on: run_stack starts a private redis-server, as on a fresh machine.
        REDIS_URL=f"redis://127.0.0.1:{procs.free_port()}/0",
        WEB_PORT=str(port), WORKERS="1", WORKER_CONCURRENCY="1", MONITORING_ENABLED="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", MEDIA_ROOT=str(tmp_path / "media"),
        STATIC_ROOT=str(tmp_path / "static"), PYTHONUNBUFFERED="1",
    )
    log = open(tmp_path / "run_stack.log", "wb")
    proc = subprocess.Popen([sys.executable, "scripts/run_stack.py"], cwd=procs.ROOT, env=env,
                            start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    return proc, port, log


def serving(proc, port) -> bool:
    assert proc.poll() is None, "run_stack.py exited before serving"
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def alive(processes) -> list:
    out = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def describe(processes) -> list[str]:
    out = []
    for p in processes:
        try:
            out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            out.append(str(p.pid))
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_every_stop_signal_stops_everything_run_stack_started(tmp_path, sig):
    proc, port, log = start_stack(tmp_path)
    started = []
    try:
        # /health/ is 200 once uvicorn serves and the worker answers its ping.
        procs.wait_for(lambda: serving(proc, port), timeout=START_DEADLINE, interval=1,
                       message="the stack to serve /health/")
        started = procs.tree(psutil.Process(proc.pid))[1:]
        commands = " ".join(" ".join(p.cmdline()) for p in alive(started))
        for part in ("redis-server", "uvicorn", "worker", "beat", "telemetry_demo"):
            assert part in commands, (part, describe(started))

        os.killpg(proc.pid, sig)  # to the process group, as systemd and a terminal do

        proc.wait(timeout=STOP_DEADLINE)
        procs.wait_for(lambda: not alive(started), timeout=STOP_DEADLINE, interval=0.5,
                       message="every process run_stack started to exit")
    except BaseException:
        log.flush()
        print((tmp_path / "run_stack.log").read_text(errors="replace")[-6000:])
        print("still running:", describe(alive(started)))
        raise
    finally:
        for p in alive(started):
            p.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
