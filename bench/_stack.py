"""A private, real stack for benchmarks: database, Redis namespace, ASGI servers, Celery workers.

Everything runs on 127.0.0.1, each child in its own process group with its output in a log file
under one temporary directory (the processes are the tests' harness, `tests/procs.py`), and
`Stack.close()` undoes it all: children stopped (SIGTERM, then SIGKILL), the database dropped
(PostgreSQL) or deleted (SQLite), every Redis key with the stack's prefix deleted. Servers and
workers start as `make run` starts them (scripts/run_stack.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import procs  # noqa: E402

PG_HOST, PG_PORT = "127.0.0.1", 5432


def log(msg: str):
    print(msg, flush=True)


def raise_open_files_limit(want: int = 20_000) -> int:
    """Thousands of sockets need as many descriptors in the servers and in the clients."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def postgres_answers(timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=timeout):
            return True
    except OSError:
        return False


# A benchmark drives 1,000 sockets and 50 predictions/s as one user from one address, each socket
# pinging and subscribing as fast as the bench wants: the API throttles (per second: DRF's history
# stays short), the per-user socket limit and the message rate a deployment sets for people would
# refuse it, so they are lifted for the processes a bench starts.
BENCH_LIMITS = {
    "API_THROTTLE_ANON": "10000/second", "API_THROTTLE_USER": "10000/second",
    "WS_MAX_SOCKETS_PER_USER": "100000", "WS_MESSAGE_RATE": "100000", "WS_MESSAGE_BURST": "100000",
}


def private_env(tmp: Path, prefix: str, redis_db: int, **settings) -> dict:
    """This environment, with a private database file, media directory, Redis database and key prefix
    (all under `tmp` or named by `prefix`), as `make run` sets it otherwise (DJANGO_DEBUG=false),
    with the limits a benchmark needs raised (BENCH_LIMITS; a caller's `settings` win)."""
    parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    env = dict(os.environ)
    for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "MONITORING_ENABLED",
                 "MONITORING_COLLECTOR_ROLE", "DATABASE_URL"):
        env.pop(name, None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "mlops_dashboard.settings",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "REDIS_URL": urlunsplit((parts.scheme, parts.netloc, f"/{redis_db}", "", "")),
        "REDIS_KEY_PREFIX": prefix,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-" + secrets.token_hex(32),
        "MEDIA_ROOT": str(tmp / "media"),
        "PYTHONUNBUFFERED": "1",
        **BENCH_LIMITS,
        **{k: str(v) for k, v in settings.items()},
    })
    raised = ", ".join(f"{k}={env[k]}" for k in BENCH_LIMITS)
    print(f"bench: limits raised for this run's processes: {raised}", file=sys.stderr, flush=True)
    return env


class Stack:
    """Database, Redis namespace, servers, workers and helper processes of one benchmark run.

    `name` names the database (`mlops_<name>_<pid>`), the key prefix (`<name>-<pid>`) and the temp dir.
    PostgreSQL is used when one answers on 127.0.0.1:5432 and `postgres` is true, else SQLite.
    """

    def __init__(self, name: str, *, redis_db: int, keep: bool = False, postgres: bool = True, **settings):
        self.name, self.keep = name, keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{name}-bench-"))
        self.prefix = f"{name}-{os.getpid()}"
        self.env = private_env(self.tmp, self.prefix, redis_db, **settings)
        self.redis_url = self.env["REDIS_URL"]
        self.pg_name = None
        if postgres and postgres_answers():
            self.pg_name = f"mlops_{name}_{os.getpid()}"
            self.env["DATABASE_URL"] = f"postgres://postgres@{PG_HOST}:{PG_PORT}/{self.pg_name}"
            self.database = f"PostgreSQL ({self.pg_name})"
        else:
            self.database = "SQLite (temporary file)"
        self.servers: list[procs.Server] = []
        self.workers: list[procs.Worker] = []
        self.helpers: list[procs.Helper] = []
        self.db_created = False

    # --- database ------------------------------------------------------------------------------

    def create_database(self):
        if self.pg_name:
            import psycopg

            # One connection held for the whole run: the bench's own queries must not be refused when
            # the stack has taken every connection PostgreSQL allows.
            self.pg = psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True,
                                      connect_timeout=5)
            self.pg.execute(f'CREATE DATABASE "{self.pg_name}"')
            self.db_created = True
        subprocess.check_call([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env)

    def drop_database(self):
        if not (self.pg_name and self.db_created):
            return
        self.pg.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
        self.pg.close()
        self.db_created = False

    def database_connections(self) -> tuple[int, int] | None:
        """Connections to this run's database, and how many of them wait for a lock (PostgreSQL only)."""
        if not (self.pg_name and self.db_created):
            return None
        return tuple(self.pg.execute(
            "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity WHERE datname = %s",
            (self.pg_name,)).fetchone())

    def create_user(self, username: str = "bench", role: str | None = None) -> tuple[int, str]:
        """A user and a new API token of theirs (for `Authorization: Token <key>`): (user id, key).
        With `role`, they are a member of the default project in that role."""
        code = (
            "import django; django.setup()\n"
            "from django.contrib.auth import get_user_model\n"
            "from mlops_dashboard.models import Membership\n"
            "from mlops_dashboard.projects import default_project\n"
            "from mlops_dashboard.tokens import api_token_create\n"
            f"u, _ = get_user_model().objects.get_or_create(username={username!r})\n"
            f"if {role!r}: Membership.objects.update_or_create(project=default_project(), user=u, "
            f"defaults={{'role': {role!r}}})\n"
            "print(u.pk, api_token_create(user=u, name='bench')[1])\n"
        )
        out = subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, env=self.env, text=True)
        user_id, key = out.split()[-2:]
        return int(user_id), key

    # --- processes -----------------------------------------------------------------------------

    def server(self, kind: str = "uvicorn", *, nice: int = 0, **kwargs) -> procs.Server:
        """Start an ASGI server as `make run` does: the workers on this machine sample its metrics.
        `kwargs`: the Server's `app` and `uvicorn_flags`, and settings for this server only."""
        port = procs.free_port()
        kwargs.setdefault("MONITORING_COLLECTOR_ROLE", "worker")
        server = procs.Server(port, kind, env=self.env, log_dir=self.tmp, name=f"server-{kind}-{port}", nice=nice,
                              **kwargs)
        self.servers.append(server)
        return server.start()

    def stop_server(self, server: procs.Server):
        server.stop()
        self.servers.remove(server)

    def start_servers(self, n: int) -> list[procs.Server]:
        for _ in range(n):
            self.server()
        return self.servers

    def start_workers(self, n: int, concurrency: int, beat_in_first: bool = True) -> list[procs.Worker]:
        for i in range(1, n + 1):
            worker = procs.Worker(concurrency, beat=beat_in_first and i == 1, env=self.env, log_dir=self.tmp,
                                  name=f"worker{i}", hostname=f"{self.name}{i}-{os.getpid()}@%h", lean=False)
            self.workers.append(worker)
            worker.start(timeout=90)
        return self.workers

    def helper(self, script: Path, role: str, index: int = 0, nice: int = 0) -> procs.Helper:
        h = procs.Helper(script, role, env=self.env, log_dir=self.tmp, name=f"{role}{index}", nice=nice)
        self.helpers.append(h)
        return h.start()

    def show_logs(self, lines: int = 25):
        for path in sorted(self.tmp.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            if text:
                log(f"\n----- {path.name} (last {lines} of {len(text):,} lines) -----")
                log("\n".join(line[:300] for line in text[-lines:]))

    # --- teardown ------------------------------------------------------------------------------

    def delete_redis_keys(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            n = 0
            for key in client.scan_iter(match=f"{self.prefix}:*", count=1000):
                n += client.delete(key)
            return n
        finally:
            client.close()

    def close(self):
        for group in (self.helpers, self.servers, self.workers):
            for proc in group:
                try:
                    proc.stop()
                except Exception as exc:  # noqa: BLE001 - go on tearing down the rest
                    log(f"cleanup: {proc.name} not stopped cleanly: {exc!r}")
                    proc.kill()
        try:
            self.drop_database()
        except Exception as exc:  # noqa: BLE001
            log(f"cleanup: database {self.pg_name} not dropped: {exc!r}")
        try:
            self.delete_redis_keys()
        except Exception as exc:  # noqa: BLE001
            log(f"cleanup: Redis keys {self.prefix}:* not deleted: {exc!r}")
        if self.keep:
            log(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
