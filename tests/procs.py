"""Real processes for tests and benchmarks that cross a process boundary: ASGI servers, Celery workers
and helper processes driven by JSON lines.

Each child runs in its own process group with its output in a log file, and can be stopped,
SIGKILLed or restarted. A test's children get the test run's environment (database, Redis URL, key
prefix) and log under .run/ (shown when one fails to start); a benchmark passes the whole
environment (`env=`) and a directory of its own (`log_dir=`), which holds one log per `name`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
# uvicorn as `make run` starts it (scripts/run_stack.py): per-message compression off.
UVICORN_FLAGS = "--loop uvloop --http httptools --ws websockets-sansio --ws-per-message-deflate false"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the database the tests are using now (the test database, once created)."""
    from django.db import connection

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


def niceness(nice: int):
    """A preexec_fn running a child at this scheduling priority (its threads inherit it), or None.

    With autogroup scheduling (Linux' default on desktops and many VMs) CPU time is shared between
    sessions first, and each child here starts its own session, so the session's autogroup gets the
    niceness too; otherwise it would change nothing against other users' processes.
    """
    if not nice:
        return None

    def apply():
        os.nice(nice)
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(nice))
        except OSError:
            pass

    return apply


def tree(ps) -> list:
    """A process and all its descendants (psutil), skipping any that exited meanwhile."""
    import psutil

    try:
        return [ps, *ps.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


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


def tree_rss_mb(ps) -> float:
    import psutil

    total = 0
    for p in tree(ps):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


class Proc:
    name = "proc"

    def __init__(self, *, env: dict | None = None, log_dir: Path | None = None, name: str | None = None,
                 nice: int = 0, **extra_env):
        self.base_env = env
        self.extra_env = extra_env
        self.nice = nice
        self.proc: subprocess.Popen | None = None
        self.log = None
        self.name = name or type(self).name
        if log_dir is None:
            RUN_DIR.mkdir(exist_ok=True)
            self.log_path = RUN_DIR / f"{self.name}-{os.getpid()}-{id(self)}.log"
        else:
            self.log_path = Path(log_dir) / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self, timeout: float):
        raise NotImplementedError

    def environment(self) -> dict:
        if self.base_env is None:
            return child_env(**self.extra_env)
        return {**self.base_env, **{k: str(v) for k, v in self.extra_env.items()}}

    def streams(self) -> dict:
        """Where the child's standard streams go (Popen arguments)."""
        return {"stdout": self.log, "stderr": subprocess.STDOUT}

    def start(self, timeout: float = 60):
        self.log = open(self.log_path, "ab")
        self.log_start = self.log.tell()  # a restart appends to the same log: readiness is read after this
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.environment(), start_new_session=True,
            preexec_fn=niceness(self.nice), **self.streams(),
        )
        self.__dict__.pop("ps", None)
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

    def output_since_start(self) -> str:
        """What this run of the process logged (not an earlier run's lines in the same log)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(getattr(self, "log_start", 0))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @cached_property
    def ps(self):
        import psutil

        return psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        """CPU seconds of the process and its children (a worker's pool and beat)."""
        return tree_cpu(self.ps)

    def rss_mb(self) -> float:
        return tree_rss_mb(self.ps)

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL the whole process group, as a crash or the OOM killer would."""
        if self.proc is not None:
            self._signal_group(signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, timeout: float = 15):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # The process group outlives its leader when a child lingers (a pool process): end it too.
        self.kill()
        if self.log is not None:
            self.log.close()


class Server(Proc):
    """A real ASGI server process: uvicorn (default) or daphne, serving our app unless told `app`."""

    name = "server"

    def __init__(self, port: int | None = None, kind: str = "uvicorn", *,
                 app: str = "mlops_dashboard.asgi:application", uvicorn_flags: str = UVICORN_FLAGS, **kwargs):
        self.port = port or free_port()
        self.kind, self.app, self.uvicorn_flags = kind, app, uvicorn_flags
        super().__init__(**kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    def command(self):
        if self.kind == "daphne":
            return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), self.app]
        return [
            sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(self.port),
            "--lifespan", "off", "--no-access-log", "--ws-max-size", "1048576", *self.uvicorn_flags.split(),
        ]

    @property
    def flags(self) -> str:
        return " ".join(self.command()[3:]) if self.kind == "daphne" else self.uvicorn_flags

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

    def runqueue_wait(self) -> float:
        """Seconds the server's threads spent runnable but waiting for a CPU (Linux schedstat)."""
        total = 0.0
        try:
            for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
                with open(f"/proc/{self.proc.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1]) / 1e9
        except OSError:
            pass
        return total

    def tracebacks(self) -> int:
        return self.output().count("Traceback (most recent call last)")

    def problems(self) -> list[str]:
        pat = re.compile(r"Traceback|Too many connections|ERROR|CRITICAL|Exception|Task was destroyed")
        return [line for line in self.output().splitlines() if pat.search(line)]


class Worker(Proc):
    """A real Celery worker (prefork pool), optionally with beat embedded.

    `lean` (tests) starts it without gossip and mingle; a benchmark starts it as `make run` does.
    """

    name = "worker"
    counter = 0

    def __init__(self, concurrency: int = 2, beat: bool = False, queues: str | None = None, *,
                 hostname: str | None = None, lean: bool = True, **kwargs):
        super().__init__(**kwargs)
        Worker.counter += 1
        self.hostname = hostname or f"test{Worker.counter}-{os.getpid()}@localhost"
        self.concurrency = concurrency
        self.beat = beat
        self.queues = queues
        self.lean = lean

    def command(self):
        cmd = [
            sys.executable, "-m", "celery", "-A", "mlops_dashboard", "worker", "-l", "info", "-P", "prefork",
            "-c", str(self.concurrency), "-n", self.hostname,
        ]
        if self.lean:
            cmd += ["--without-gossip", "--without-mingle"]
        if self.beat:
            cmd += ["-B", "-s", str(self.log_path.with_name(f"{self.log_path.stem}-beat-schedule"))]
        if self.queues:
            cmd += ["-Q", self.queues]
        return cmd

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("exited")
            if " ready." in self.output_since_start():
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


class Helper(Proc):
    """`script --role <role>`, driven by JSON lines: a command a line on its stdin, an answer a line
    on its stdout (`{"error": ...}` when the command failed); its stderr goes to the log."""

    name = "helper"

    def __init__(self, script: Path, role: str, **kwargs):
        super().__init__(**kwargs)
        self.script, self.role = Path(script), role
        self.lines: queue.Queue = queue.Queue()

    def command(self):
        return [sys.executable, str(self.script), "--role", self.role]

    def streams(self) -> dict:
        return {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": self.log, "text": True, "bufsize": 1}

    def wait_ready(self, timeout):
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = 120) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name} (pid {self.proc.pid}) did not answer in {timeout} s") from None
        if line is None:
            raise RuntimeError(f"{self.name} (pid {self.proc.pid}) exited (see {self.log_path.name})")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"{self.name} (pid {self.proc.pid}): {out['error']}")
        return out

    def call(self, obj, timeout: float = 120) -> dict:
        self.send(obj)
        return self.recv(timeout)

    def stop(self, timeout: float = 10):
        if self.alive():
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(timeout=timeout)
            except Exception:  # noqa: BLE001 - it is killed below
                pass
        super().stop(timeout)


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
