"""`make run`: Redis (found or started), migrations, static files, first-run setup, then the ASGI
server, Celery worker(s), Celery beat and the demo plant (`manage.py telemetry_demo`, unless
DEMO_TELEMETRY=false) under one supervisor (honcho).

Every way of stopping it stops everything it started: Ctrl-C (SIGINT), SIGTERM to it or to its
process group (systemd, a container runtime, a supervisor), SIGHUP (the terminal closed). honcho
runs in a session of its own, so a signal to our group reaches it only through us: we ask it to
stop its processes, wait for it, make sure none of them outlived it, then stop our private Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis_local  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def procfile(env: dict) -> str:
    host = env.get("HOST", "127.0.0.1")
    port = int(env.get("WEB_PORT", "8000"))
    concurrency = env.get("WORKER_CONCURRENCY", "2")
    server = env.get("ASGI_SERVER", "uvicorn")
    lines = []
    for i in range(int(env.get("WEB_PROCESSES", "1"))):
        p = port + i
        if server == "daphne":
            cmd = f"{PY} -m daphne -b {host} -p {p} mlops_dashboard.asgi:application"
        else:
            # The fastest flags in bench/event_latency.py (README): per-message compression off.
            cmd = (f"{PY} -m uvicorn mlops_dashboard.asgi:application --host {host} --port {p} "
                   f"--lifespan off --no-access-log --ws-max-size 1048576 --loop uvloop --http httptools "
                   f"--ws websockets-sansio --ws-per-message-deflate false")
        # The workers on this machine sample its metrics; the servers keep their CPU for sockets and
        # only report their own figures (open sockets, API p95, ping round trips).
        lines.append(f"web{i + 1 if i else ''}: env MONITORING_COLLECTOR_ROLE=worker {cmd}")
    for i in range(int(env.get("WORKERS", "1"))):
        # exec: the worker leads its own session, so WORKER_NICE also lowers its CPU group (celery.py).
        lines.append(f"worker{i + 1 if i else ''}: exec {PY} -m celery -A mlops_dashboard worker -l info "
                     f"-c {concurrency} -n worker{i + 1}@%h")
    lines.append(f"beat: {PY} -m celery -A mlops_dashboard beat -l info")
    if demo_telemetry(env):
        # The demo plant sends through the API like any client: to the first web process.
        target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        target = f"[{target}]" if ":" in target else target
        lines.append(f"demo: exec {PY} manage.py telemetry_demo --url http://{target}:{port}")
    return "\n".join(lines) + "\n"


def demo_telemetry(env: dict) -> bool:
    """DEMO_TELEMETRY as settings.py reads it (django-environ's booleans), on by default."""
    return env.get("DEMO_TELEMETRY", "true").strip().lower() in ("true", "on", "ok", "y", "yes", "1")


def manage(*args, env):
    subprocess.check_call([PY, "manage.py", *args], cwd=ROOT, env=env)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE = 20  # seconds honcho gets to stop its processes (it SIGKILLs them after 5) before we do


class Stopping(Exception):
    """A stop signal arrived before the supervisor was running: unwind to the clean-up."""


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _end(processes: list, timeout: float) -> None:
    """SIGTERM whatever still runs of `processes`, then SIGKILL what outlives `timeout`."""
    import psutil

    alive = [p for p in processes if p.is_running()]
    for p in alive:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def supervise(path: str, env: dict) -> int:
    """honcho over the Procfile until it exits; a stop signal is passed on to it (SIGINT as SIGINT,
    SIGTERM and SIGHUP as SIGTERM), and whatever it started is ended if it outlives honcho."""
    supervisor = subprocess.Popen([PY, "-m", "honcho", "start", "-f", path, "-d", ROOT], cwd=ROOT, env=env,
                                  start_new_session=True)
    started: list = []

    def forward(signum, frame):
        started.extend(p for p in _descendants(supervisor.pid) if p not in started)
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    try:
        code = supervisor.wait()  # a forwarded signal does not interrupt the wait (PEP 475)
    finally:
        if supervisor.poll() is None:  # we are unwinding on an error: honcho must not outlive us
            forward(signal.SIGTERM, None)
            try:
                supervisor.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                supervisor.kill()
        started.extend(p for p in _descendants(supervisor.pid) if p not in started)
        _end(started, timeout=STOP_GRACE)
    return code


def main() -> int:
    def stop(signum, frame):
        raise Stopping(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    redis_proc = None
    path = os.path.join(ROOT, ".run", f"Procfile-{os.getpid()}")
    try:
        url, redis_proc = redis_local.ensure()
        env = dict(os.environ, REDIS_URL=url, PYTHONUNBUFFERED="1")
        manage("migrate", "--noinput", "-v", "0", env=env)
        manage("collectstatic", "--noinput", "-v", "0", env=env)
        manage("bootstrap", env=env)
        os.makedirs(os.path.join(ROOT, ".run"), exist_ok=True)
        with open(path, "w") as f:
            f.write(procfile(env))
        host, port = env.get("HOST", "127.0.0.1"), env.get("WEB_PORT", "8000")
        print(f"\n  MLOps dashboard: http://{host}:{port}/   (Ctrl-C stops everything)\n", flush=True)
        return supervise(path, env)
    except (KeyboardInterrupt, Stopping):
        return 130
    finally:
        for sig in STOP_SIGNALS:  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        redis_local.stop(redis_proc)
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
