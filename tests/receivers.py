"""Real receivers for notifications, started by a test on a free loopback port: an SMTP server
(aiosmtpd) that keeps every message, and an HTTP server that keeps every request's JSON body.

Fixtures (tests/conftest.py): `smtp_server` and `webhook_server`, each with `.url` for a channel,
`.messages` and `.wait(count)`. `closed_port()` is a port nothing listens on.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused at once)."""
    return free_port()


class _Kept:
    def __init__(self):
        self.messages: list = []
        self.lock = threading.Lock()

    def keep(self, item) -> None:
        with self.lock:
            self.messages.append(item)

    def wait(self, count: int = 1, timeout: float = 60, predicate=None) -> list:
        """Wait until `count` messages (matching `predicate`, if given) have arrived; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = [m for m in self.messages if predicate is None or predicate(m)]
            if len(got) >= count or time.monotonic() > deadline:
                if len(got) < count:
                    raise AssertionError(f"{len(got)} of {count} messages arrived in {timeout} s: {got}")
                return got
            time.sleep(0.05)

    def settle(self, seconds: float) -> list:
        """Everything that arrived after waiting `seconds` more (to show that nothing else came)."""
        time.sleep(seconds)
        with self.lock:
            return list(self.messages)


class SmtpServer(_Kept):
    """`.messages`: email.message.EmailMessage objects (with `.envelope_to`)."""

    def __init__(self):
        super().__init__()
        from aiosmtpd.controller import Controller

        kept = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                message.envelope_to = list(envelope.rcpt_tos)
                kept.keep(message)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def url(self, to: str = "ops@example.com", sender: str = "alerts@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?from={sender}&to={to}"

    @staticmethod
    def text(message) -> str:
        part = message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""


class WebhookServer(_Kept):
    """`.messages`: each request's {path, headers, json}; answers `status` (200 unless changed)."""

    def __init__(self):
        super().__init__()
        self.status = 200
        kept = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                kept.keep({"path": self.path, "headers": dict(self.headers), "json": body})
                self.send_response(kept.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> WebhookServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"
