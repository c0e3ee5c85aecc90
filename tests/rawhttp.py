"""HTTP/1.1 over a raw socket, for clients no library would be: ones that announce a body and send
it slowly, partly or never (the tests of slow and anonymous clients, bench/slow_clients.py)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    def json(self):
        import json

        return json.loads(self.body)


def open_request(port: int, method: str, path: str, headers: dict | None = None, body: bytes = b"",
                 timeout: float = 60) -> socket.socket:
    """Connect, send the request line and headers, then `body` (which may be only part of the
    announced Content-Length); the socket stays open for more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin1") + body)
    return sock


def read_response(sock: socket.socket, timeout: float = 60) -> Response:
    """Read one response (by its Content-Length, or until the server closes)."""
    deadline = time.monotonic() + timeout
    data = b""

    def more() -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete response within {timeout} s; got {data[:200]!r}")
        sock.settimeout(left)
        try:
            return sock.recv(65536)
        except ConnectionResetError:
            return b""

    while b"\r\n\r\n" not in data:
        chunk = more()
        if not chunk:
            raise ConnectionError(f"closed before a response; got {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            chunk = more()
            if not chunk:
                break
            body += chunk
    return Response(status, headers, body)


def closed_by_server(sock: socket.socket, timeout: float = 60) -> bool:
    """True once the server has closed the connection (after any bytes still in flight)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def answered(sock: socket.socket) -> bool:
    """True when the server has sent anything (or closed) on this socket, without waiting."""
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return True  # data, or b"" for a closed connection
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


def send_some(sock: socket.socket, data: bytes) -> bool:
    """Send more of a body; True when the server has closed the connection meanwhile."""
    try:
        sock.sendall(data)
        return False
    except (BrokenPipeError, ConnectionResetError):
        return True
