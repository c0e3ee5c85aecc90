"""`make run`: Redis (found or started), migrations, static files, first-run setup, then the ASGI
server, Celery worker(s) and Celery beat under one supervisor (honcho). Ctrl-C stops them all."""

from __future__ import annotations

import os
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
    return "\n".join(lines) + "\n"


def manage(*args, env):
    subprocess.check_call([PY, "manage.py", *args], cwd=ROOT, env=env)


def main() -> int:
    url, redis_proc = redis_local.ensure()
    env = dict(os.environ, REDIS_URL=url, PYTHONUNBUFFERED="1")
    try:
        manage("migrate", "--noinput", "-v", "0", env=env)
        manage("collectstatic", "--noinput", "-v", "0", env=env)
        manage("bootstrap", env=env)
        os.makedirs(os.path.join(ROOT, ".run"), exist_ok=True)
        path = os.path.join(ROOT, ".run", "Procfile")
        with open(path, "w") as f:
            f.write(procfile(env))
        host, port = env.get("HOST", "127.0.0.1"), env.get("WEB_PORT", "8000")
        print(f"\n  MLOps dashboard: http://{host}:{port}/   (Ctrl-C stops everything)\n", flush=True)
        return subprocess.call([PY, "-m", "honcho", "start", "-f", path, "-d", ROOT], cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        redis_local.stop(redis_proc)


if __name__ == "__main__":
    sys.exit(main())
