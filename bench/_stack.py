"""A private, real stack for benchmarks: database, Redis namespace, ASGI servers, Celery workers.

Everything runs on 127.0.0.1, each child in its own process group with its output in a log file
under one temporary directory, and `Stack.close()` undoes it all: children stopped (SIGTERM, then
SIGKILL), the database dropped (PostgreSQL) or deleted (SQLite), every Redis key with the stack's
prefix deleted. The ASGI servers are `bench.event_latency.Server`, started as `make run` starts
them (scripts/run_stack.py).
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.event_latency import DEFAULT_UVICORN_FLAGS, Child, Server, _kill_group, log  # noqa: E402

PG_HOST, PG_PORT = "127.0.0.1", 5432


def postgres_answers(timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=timeout):
            return True
    except OSError:
        return False


def tree(ps) -> list:
    """A process and all its descendants (psutil), skipping any that exited meanwhile."""
    import psutil

    try:
        return [ps, *ps.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss_mb(ps) -> float:
    import psutil

    total = 0
    for p in tree(ps):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def tree_cpu(ps) -> float:
    """CPU seconds (user + system) of a process and its live descendants."""
    import psutil

    total = 0.0
    for p in tree(ps):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


class Worker:
    """A Celery worker (prefork pool), optionally with beat embedded (-B)."""

    def __init__(self, index: int, env: dict, logdir: Path, concurrency: int, beat: bool):
        self.name = f"worker{index}"
        self.env = env
        self.log_path = logdir / f"{self.name}.log"
        self.cmd = [sys.executable, "-m", "celery", "-A", "mlops_dashboard", "worker", "-l", "info", "-P", "prefork",
                    "-c", str(concurrency), "-n", f"load{index}-{os.getpid()}@%h"]
        if beat:
            self.cmd += ["-B", "-s", str(logdir / f"beat-schedule-{index}")]
        self.proc = None

    def start(self, timeout: float = 90):
        import psutil

        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while " ready." not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        self.ps = psutil.Process(self.proc.pid)
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rss_mb(self) -> float:
        return tree_rss_mb(self.ps)

    def cpu(self) -> float:
        return tree_cpu(self.ps)

    def stop(self, timeout: float = 20):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown: the pool and embedded beat too
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
        # The process group outlives its leader when a pool child lingers: make sure it is gone.
        _kill_group(self.proc)
        self.log.close()


class Helper(Child):
    """`bench.event_latency.Child` for any script: a helper process driven by JSON lines."""

    def __init__(self, script: Path, role: str, env: dict, errlog: Path):
        import psutil

        self.errlog = open(errlog, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--role", role], cwd=ROOT, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.errlog, text=True, bufsize=1, start_new_session=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)


class Stack:
    """Database, Redis namespace, servers and workers of one benchmark run.

    `name` names the database (`mlops_<name>_<pid>`), the key prefix (`<name>-<pid>`) and the temp dir.
    """

    def __init__(self, name: str, *, redis_db: int, keep: bool = False, **settings):
        self.name, self.keep = name, keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{name}-bench-"))
        self.prefix = f"{name}-{os.getpid()}"
        parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
        self.redis_url = urlunsplit((parts.scheme, parts.netloc, f"/{redis_db}", "", ""))
        self.pg_name = None
        if postgres_answers():
            self.pg_name = f"mlops_{name}_{os.getpid()}"
            self.database_url = f"postgres://postgres@{PG_HOST}:{PG_PORT}/{self.pg_name}"
            self.database = f"PostgreSQL ({self.pg_name})"
        else:
            self.database_url = f"sqlite:///{self.tmp / 'db.sqlite3'}"
            self.database = "SQLite (temporary file)"
        self.env = dict(os.environ)
        for name_ in ("DJANGO_ALLOW_ASYNC_UNSAFE", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "MONITORING_ENABLED",
                      "MONITORING_COLLECTOR_ROLE", "DATABASE_URL"):
            self.env.pop(name_, None)
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "mlops_dashboard.settings",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-" + secrets.token_hex(32),
            "MEDIA_ROOT": str(self.tmp / "media"),
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in settings.items()},
        })
        self.servers: list[Server] = []
        self.workers: list[Worker] = []
        self.helpers: list[Helper] = []
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

    def create_user(self, username: str = "bench") -> tuple[int, str]:
        """A user and its DRF token (for `Authorization: Token <key>`): (user id, key)."""
        code = (
            "import django; django.setup()\n"
            "from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            f"u, _ = get_user_model().objects.get_or_create(username={username!r})\n"
            "print(u.pk, Token.objects.get_or_create(user=u)[0].key)\n"
        )
        out = subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, env=self.env, text=True)
        user_id, key = out.split()[-2:]
        return int(user_id), key

    # --- processes -----------------------------------------------------------------------------

    def start_servers(self, n: int, uvicorn_flags: str = DEFAULT_UVICORN_FLAGS) -> list[Server]:
        # As `make run` starts its web processes: the workers on this machine sample its metrics.
        env = dict(self.env, MONITORING_COLLECTOR_ROLE="worker")
        for _ in range(n):
            server = Server("uvicorn", "mlops_dashboard.asgi:application", env, self.tmp, uvicorn_flags)
            self.servers.append(server)
            server.start()
        return self.servers

    def start_workers(self, n: int, concurrency: int, beat_in_first: bool = True) -> list[Worker]:
        for i in range(n):
            worker = Worker(i + 1, self.env, self.tmp, concurrency, beat=beat_in_first and i == 0)
            self.workers.append(worker)
            worker.start()
        return self.workers

    def helper(self, script: Path, role: str, index: int = 0) -> Helper:
        h = Helper(script, role, self.env, self.tmp / f"{role}{index}.err")
        self.helpers.append(h)
        return h

    def logs(self) -> list[Path]:
        return sorted(self.tmp.glob("*.log")) + sorted(self.tmp.glob("*.err"))

    def show_logs(self, lines: int = 25):
        for path in self.logs():
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
                    log(f"cleanup: {proc!r} not stopped cleanly: {exc!r}")
                    if getattr(proc, "proc", None) is not None:
                        _kill_group(proc.proc)
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
