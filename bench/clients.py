"""The bench's own clients: a minimal WebSocket client and a keep-alive HTTP client on asyncio, the
REST API as a client sees it (httpx, every call timed), and the command loop of a helper process.

The load generator stands for browsers and API clients on other machines, so it should take as
little of this one as it can: the websockets library and httpx cost a fifth to a quarter of a core
at the rates the benches send, CPU the servers under test need on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit

KEEP_ALIVE_REUSE = 3.0  # seconds an idle connection is reused by KeepAliveClient (uvicorn closes at 5)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455: what Sec-WebSocket-Accept hashes the key with
WS_OPEN_TIMEOUT = 60.0  # seconds for the TCP connection and the handshake
WS_CLOSE_TIMEOUT = 20.0  # seconds a closing socket waits for the server's close frame and end of the connection
WS_MAX_MESSAGE = 2**20  # a larger message is refused (the servers run with --ws-max-size 1048576 too)


class WsError(Exception):
    """A broken WebSocket stream; `code` is the close code the client sends before it hangs up."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


class HandshakeError(Exception):
    """The server did not upgrade the connection (an HTTP error, or a bad 101)."""


def _client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A final frame from the client: masked with a random key, as RFC 6455 requires of clients."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    keys = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ keys).to_bytes(n, "big")


class WsClient(asyncio.Protocol):
    """One client WebSocket (RFC 6455) on an asyncio Protocol: the handshake, the server's frames
    parsed straight from each read, pings answered, close handshakes both ways. Each message goes
    to `on_text(text, t)`, `t` being the `time.time()` of the read that completed it.

    The websockets library cost a task wake-up, a queue and its frame reader's generators per
    message: about a fifth of a core per process at 6,500 messages/s, on a 2-core machine whose
    servers are being measured. The load generator stands for browsers on other machines, so it
    should take as little of this one as it can; here a message costs a few microseconds.

    Gives what `close_all` uses: `await close()` and `close_code` (as in
    websockets: the code of the server's close frame, 1005 if it had none, 1006 if the connection
    ended without one). No extension is offered, so frames are never compressed.
    """

    def __init__(self, request: bytes, key: bytes, on_text=None):
        self.request = request
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        self.on_text = on_text
        self.pending: list = []  # messages received before `listen`: (text, time)
        self.opened = asyncio.get_running_loop().create_future()  # the handshake's outcome
        self.lost = asyncio.Event()  # the TCP connection is gone
        self.transport = None
        self.buf = bytearray()  # a frame (or the handshake response) not yet complete
        self.need = 0  # how long `buf` must be before it is worth parsing again
        self.handshaking, self.open, self.reading = True, False, True
        self.close_sent = False
        self.received_close: tuple[int, str] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: Exception | None = None  # what broke the stream on our side
        self.fragments: list[bytes] = []  # the frames so far of a fragmented message
        self.fragment_size = 0
        self.abort_timer = None

    # --- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        now = time.time()
        if not self.reading:  # after a close frame or a broken stream: ignored
            return
        buf = self.buf
        if buf:  # the rest of a frame: parse only once it is all here
            buf += data
            if len(buf) < self.need:
                return
            data = buf
        try:
            if self.handshaking:
                data = self._handshake(data)
                if data is None:
                    return
            pos = self._frames(data, now)
        except Exception as exc:  # noqa: BLE001 - the connection fails; the holder reports it
            self._fail(exc)
            return
        if pos < len(data):
            self.buf = bytearray(data[pos:])
        elif buf:
            self.buf = bytearray()

    def eof_received(self):
        self.open = False
        return False  # the transport closes itself

    def connection_lost(self, exc):
        self.open = self.reading = False
        if self.abort_timer is not None:
            self.abort_timer.cancel()
        self.close_code, self.close_reason = self.received_close or (1006, "")
        if not self.opened.done():
            self.opened.set_exception(self.error or ConnectionError("connection closed during the handshake"))
        self.lost.set()

    # --- the stream ------------------------------------------------------------------------------

    def _handshake(self, data):
        """The server's 101 response: checked; returns the bytes after it (frames), None until it
        is complete."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > 65536:
                raise HandshakeError("handshake response too long")
            self.buf, self.need = bytearray(data), len(data) + 1
            return None
        lines = bytes(data[:end]).decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(status) < 2 or status[1] != "101":
            raise HandshakeError(f"server rejected WebSocket connection: {lines[0]}")
        if (headers.get("upgrade", "").lower() != "websocket"
                or "upgrade" not in headers.get("connection", "").lower()
                or headers.get("sec-websocket-accept") != self.accept):
            raise HandshakeError(f"bad 101 response: {headers}")
        if headers.get("sec-websocket-extensions") or headers.get("sec-websocket-protocol"):
            raise HandshakeError(f"server chose what the client did not offer: {headers}")
        self.handshaking, self.open = False, True
        if not self.opened.done():  # else given up on (timed out)
            self.opened.set_result(None)
        return data[end + 4:]

    def _frames(self, data, now) -> int:
        """Handle every complete frame in `data`; returns where the incomplete rest starts."""
        pos, n = 0, len(data)
        while pos + 2 <= n and self.reading:
            b0, b1 = data[pos], data[pos + 1]
            size, start = b1 & 0x7F, pos + 2
            if size >= 126:  # 16- or 64-bit length
                start += 2 if size == 126 else 8
                if start > n:
                    self.need = start - pos
                    return pos
                size = int.from_bytes(data[pos + 2:start], "big")
            if b1 & 0x80 or b0 & 0x70:
                raise WsError(1002, "masked frame or reserved bits from the server")
            if size > WS_MAX_MESSAGE:
                raise WsError(1009, f"frame of {size} bytes, over the {WS_MAX_MESSAGE}-byte limit")
            end = start + size
            if end > n:
                self.need = end - pos
                return pos
            if b0 == 0x81 and not self.fragments:  # a whole text message: the usual case
                text = str(data[start:end], "utf-8")
                if self.on_text is None:
                    self.pending.append((text, now))
                else:
                    self.on_text(text, now)
            else:
                self._frame(b0, bytes(data[start:end]), now)
            pos = end
        self.need = 2
        return pos

    def _frame(self, b0: int, payload: bytes, now: float):
        opcode, fin = b0 & 0x0F, b0 & 0x80
        if opcode >= 0x8:  # control frames: whole, short, allowed between a message's fragments
            if not fin or len(payload) > 125:
                raise WsError(1002, "fragmented or long control frame")
            if opcode == 0x8:
                self._close_received(payload)
            elif opcode == 0x9 and not self.close_sent:  # uvicorn pings every 20 s, closes if unanswered
                self._send(_client_frame(0xA, payload))
            elif opcode not in (0x9, 0xA):
                raise WsError(1002, f"unknown opcode {opcode:#x}")
            return
        if opcode in (0x1, 0x2):  # text; binary (never sent by the server) is decoded like text
            if self.fragments:
                raise WsError(1002, "a new message inside a fragmented one")
        elif opcode != 0x0 or not self.fragments:
            raise WsError(1002, f"unexpected opcode {opcode:#x}")
        self.fragments.append(payload)
        self.fragment_size += len(payload)
        if self.fragment_size > WS_MAX_MESSAGE:
            raise WsError(1009, f"message over the {WS_MAX_MESSAGE}-byte limit")
        if fin:
            text = b"".join(self.fragments).decode("utf-8")
            self.fragments, self.fragment_size = [], 0
            if self.on_text is None:
                self.pending.append((text, now))
            else:
                self.on_text(text, now)

    def _close_received(self, payload: bytes):
        """The server's close frame: echo its code (unless ours went first), then wait for the
        server to end the TCP connection, as RFC 6455 has the server do."""
        if len(payload) == 1:
            raise WsError(1002, "close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big") if payload else 1005
        self.received_close = (code, payload[2:].decode("utf-8", "replace"))
        self.open = self.reading = False
        if not self.close_sent:
            self.close_sent = True
            self._send(_client_frame(0x8, payload[:2]))
        self._abort_later()

    def _fail(self, exc: Exception):
        """Something we cannot read (a protocol error, a message too big, bad UTF-8, an error
        handling a message): close with a code saying why and hang up; the holder notes `exc`."""
        self.error = exc
        self.open = self.reading = False
        if self.handshaking:
            if not self.opened.done():
                self.opened.set_exception(exc)
            self.transport.abort()
            return
        if not self.close_sent:
            self.close_sent = True
            code = exc.code if isinstance(exc, WsError) else 1007 if isinstance(exc, UnicodeDecodeError) else 1011
            self._send(_client_frame(0x8, code.to_bytes(2, "big")))
        self.transport.close()
        self._abort_later()

    def _send(self, frame: bytes):
        if not self.transport.is_closing():
            self.transport.write(frame)

    def _abort_later(self):
        if self.abort_timer is None and self.transport is not None:
            self.abort_timer = asyncio.get_running_loop().call_later(WS_CLOSE_TIMEOUT, self.transport.abort)

    # --- for the holder ----------------------------------------------------------------------------

    def listen(self, on_text):
        """Start handing messages to `on_text`, first those received since the handshake."""
        self.on_text = on_text
        pending, self.pending = self.pending, []
        try:
            for text, now in pending:
                on_text(text, now)
        except Exception as exc:  # noqa: BLE001 - as in data_received
            self._fail(exc)

    def send_text(self, text: str):
        """Send a text message if the socket is open (else nothing: its holder reconnects it)."""
        if self.open:
            self._send(_client_frame(0x1, text.encode()))

    async def close(self, code: int = 1000):
        """Close cleanly: a close frame, then the server's close frame and its end of the
        connection, waited for WS_CLOSE_TIMEOUT at most (then the connection is aborted)."""
        if self.transport is None or self.lost.is_set():
            return
        if self.handshaking:
            self.transport.abort()
        elif not self.close_sent:
            self.close_sent, self.open = True, False
            self._send(_client_frame(0x8, code.to_bytes(2, "big")))
        self._abort_later()
        await self.lost.wait()



async def connect(url: str, token: str, after: int | None = None, on_text=None) -> WsClient:
    """Open a socket (`Authorization: Token`, resuming after `after` if given), handshake done."""
    parts = urlsplit(url if after is None else f"{url}?last_event_id={after}")
    key = base64.b64encode(os.urandom(16))
    # No Sec-WebSocket-Extensions: per-message deflate is not offered (the servers decline it anyway).
    request = (f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
               f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Token {token}\r\n\r\n").encode()
    ws = WsClient(request, key, on_text)
    loop = asyncio.get_running_loop()

    async def handshake():
        await loop.create_connection(lambda: ws, parts.hostname, parts.port or 80)
        await ws.opened

    try:
        await asyncio.wait_for(handshake(), WS_OPEN_TIMEOUT)
    except BaseException:
        ws.opened.cancel()  # given up on: its outcome is not waited for
        if ws.transport is not None:
            ws.transport.abort()
        raise
    return ws



async def close_all(sockets: list, readers: list) -> dict:
    """Close every socket at once (WsClient or a websockets connection), then end their readers."""
    errors: list[str] = []

    async def one(ws):
        try:
            await ws.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"close: {exc!r}"[:200])

    t0 = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(one(ws) for ws in sockets)), timeout=60)
    except TimeoutError:
        errors.append("close: timed out after 60 s")
    secs = time.monotonic() - t0
    # A clean close handshake ends with code 1000 from the server's side too.
    unclean = [ws.close_code for ws in sockets if ws.close_code not in (1000, 1001)]
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {"closed": len(sockets), "errors": len(errors), "error_samples": errors[:5], "secs": secs,
            "unclean": len(unclean), "unclean_codes": sorted(set(map(str, unclean)))[:5]}



class KeepAliveClient:
    """A minimal HTTP/1.1 client for the prediction sender: keep-alive connections to one server,
    JSON POSTs, responses read by Content-Length (or chunked). httpx cost about a quarter of a
    core at 50 requests/s, CPU this 2-core machine's servers need: the load generator stands for
    clients on other machines, so it should take as little of this one as it can."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        parts = urlsplit(base_url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.head = (f"Host: {parts.netloc}\r\nAuthorization: Token {token}\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\n")
        self.idle: list = []  # (reader, writer, when it was last used), most recent last

    async def post(self, path: str, payload) -> tuple[int, bytes]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = (f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n").encode() + body
        while self.idle:
            reader, writer, used = self.idle.pop()
            if time.monotonic() - used < KEEP_ALIVE_REUSE:
                break
            writer.close()  # the server may have closed it already (uvicorn's keep-alive is 5 s)
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            status, keep, data = await asyncio.wait_for(self._response(reader), self.timeout)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer, time.monotonic()))
        else:
            writer.close()
        return status, data

    @staticmethod
    async def _response(reader) -> tuple[int, bool, bytes]:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        status = int(line.split(b" ", 2)[1])
        length, chunked, keep = 0, False, True
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                keep = False
        if not chunked:
            return status, keep, await reader.readexactly(length)
        data = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            data += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
        return status, keep, data

    async def aclose(self):
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()



class Api:
    """The REST API as a client sees it, round-robin over the servers; every call is timed."""

    def __init__(self, bases: list[str], token: str):
        import httpx

        self.http = [httpx.Client(base_url=b, headers={"Authorization": f"Token {token}"}, timeout=60) for b in bases]
        self.turn = itertools.count()
        self.lock = threading.Lock()
        self.calls: list[tuple[float, str, float, int]] = []  # (wall time, label, ms, status)
        self.errors: list[str] = []

    def __call__(self, method: str, path: str, label: str, **kwargs):
        """The JSON body of a 2xx answer; None (and an error recorded) otherwise."""
        import httpx

        client = self.http[next(self.turn) % len(self.http)]
        began, t0 = time.time(), time.perf_counter()
        try:
            response = client.request(method, path, **kwargs)
            code, text = response.status_code, response.text
        except httpx.HTTPError as exc:
            code, text = 0, repr(exc)
        ms = (time.perf_counter() - t0) * 1000
        with self.lock:
            self.calls.append((began, label, ms, code))
            if not 200 <= code < 300:
                self.errors.append(f"{label}: {method} {path} -> {code} {text[:200]}")
        return response.json() if 200 <= code < 300 else None

    def close(self):
        for c in self.http:
            c.close()



def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(handle):
    """A helper process's loop: each line on stdin is a JSON command, `await handle(cmd)` answers it
    (a JSON line on stdout; None: an unknown command); "quit" is answered and ends the loop. An
    exception is answered as `{"error": ...}`; the helper's remaining tasks are cancelled on return."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            reply({"ok": True})
            return
        try:
            out = await handle(cmd)
        except Exception as exc:  # noqa: BLE001 - the orchestrator reports it
            out = {"error": repr(exc)[:500]}
        reply(out if out is not None else {"error": f"unknown command {cmd['cmd']}"})
