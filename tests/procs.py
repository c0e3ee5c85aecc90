"""Real processes for tests that cross a process boundary: ASGI servers and Celery workers.

Each child gets the test run's environment (database, Redis URL, key prefix), its output goes to a
log file under .run/ (shown when it fails to start), and it can be stopped, SIGKILLed or restarted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the database the tests are using now (the test database, once created)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


def child_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "DJANGO_SETTINGS_MODULE": "mlops_dashboard.settings",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Proc:
    name = "proc"

    def __init__(self, **env):
        self.extra_env = env
        self.proc: subprocess.Popen | None = None
        RUN_DIR.mkdir(exist_ok=True)
        self.log_path = RUN_DIR / f"{self.name}-{os.getpid()}-{id(self)}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self, timeout: float):
        raise NotImplementedError

    def start(self, timeout: float = 60):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=child_env(**self.extra_env), stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            self.wait_ready(timeout)
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.output()[-4000:]}") from None
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL the whole process group, as a crash or the OOM killer would."""
        if self.proc is not None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15):
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.log.close()


class Server(Proc):
    """A real ASGI server process: uvicorn (default) or daphne."""

    name = "server"

    def __init__(self, port: int | None = None, kind: str = "uvicorn", **env):
        super().__init__(**env)
        self.port = port or free_port()
        self.kind = kind

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    def command(self):
        if self.kind == "daphne":
            return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "mlops_dashboard.asgi:application"]
        return [
            sys.executable, "-m", "uvicorn", "mlops_dashboard.asgi:application", "--host", "127.0.0.1",
            "--port", str(self.port), "--lifespan", "off", "--no-access-log", "--ws-max-size", "1048576",
            "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false",
        ]

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("exited")
            try:
                httpx.get(self.url + "/login/", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError


class Worker(Proc):
    """A real Celery worker (prefork pool), optionally with beat embedded."""

    name = "worker"
    counter = 0

    def __init__(self, concurrency: int = 2, beat: bool = False, queues: str | None = None, **env):
        super().__init__(**env)
        Worker.counter += 1
        self.hostname = f"test{Worker.counter}-{os.getpid()}@localhost"
        self.concurrency = concurrency
        self.beat = beat
        self.queues = queues

    def command(self):
        cmd = [
            sys.executable, "-m", "celery", "-A", "mlops_dashboard", "worker", "-l", "info", "-P", "prefork",
            "-c", str(self.concurrency), "-n", self.hostname, "--without-gossip", "--without-mingle",
        ]
        if self.beat:
            cmd += ["-B", "-s", str(RUN_DIR / f"beat-{os.getpid()}-{id(self)}")]
        if self.queues:
            cmd += ["-Q", self.queues]
        return cmd

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("exited")
            if " ready." in self.output():
                return
            time.sleep(0.1)
        raise TimeoutError

    def busy(self) -> bool:
        """True while the worker runs or holds any task (asks it over the broker)."""
        from mlops_dashboard.celery import app

        inspect = app.control.inspect([self.hostname], timeout=1.0)
        for reply in (inspect.active(), inspect.reserved()):
            if reply is None or reply.get(self.hostname):
                return True
        return False

    def worker_pids(self) -> list[int]:
        """The pool's child processes (where tasks run)."""
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def wait_idle(worker: Worker, timeout: float = 60) -> None:
    if not worker.alive():
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.busy():
        time.sleep(0.2)


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
