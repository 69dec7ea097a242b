"""A real HTTP server on 127.0.0.1 that records what it receives and answers as scripted.

Used for the SMS/e-mail gateway, processors' webhook receivers and internal data sources.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support import pii_scan


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[[Received], Reply]


def _watch_codes(item: Received) -> None:
    """Hand every one-time code a gateway receives to the privacy scan (it must leak nowhere)."""
    try:
        code = json.loads(item.body).get("variables", {}).get("code")
    except (ValueError, AttributeError):
        return
    if isinstance(code, str):
        pii_scan.saw_code(code)


class _Listener(ThreadingHTTPServer):
    # A worker opens up to 32 connections at once (webhook_max_concurrency). The standard
    # library's backlog of 5 drops the rest of the SYNs, and on a busy machine a second drop
    # outlasts the 5 s connect timeout: a real server (uvicorn: 2048) would have accepted them.
    request_queue_size = 128


class RecordingServer:
    """Start with ``with RecordingServer() as server:``; ``server.url`` is its base URL."""

    def __init__(self, responder: Responder | None = None, *, port: int = 0) -> None:
        self.received: list[Received] = []
        self.script: deque[Reply] = deque()
        self.responder = responder
        self.default = Reply(200, {"ok": True})
        self._lock = threading.Lock()
        self._down = False
        self._connections: set[Any] = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner._connections.add(self.connection)

            def finish(self) -> None:
                with owner._lock:
                    owner._connections.discard(self.connection)
                super().finish()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length or owner._down:
                    # The client went away mid-body (e.g. a killed worker), or the server is
                    # down: like any HTTP server, take nothing as received.
                    self.close_connection = True
                    return
                item = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                _watch_codes(item)
                with owner._lock:
                    owner.received.append(item)
                    reply = owner.script.popleft() if owner.script else None
                if reply is None:
                    reply = owner.responder(item) if owner.responder else owner.default
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload).encode()
                    content_type = "application/json"
                else:
                    payload = payload.encode() if isinstance(payload, str) else payload
                    content_type = "text/plain"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # A fixed port lets a test take a receiver down and bring it back at the same URL.
        self._server = _Listener(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        # A short poll interval: stop() returns in ~10 ms instead of the default 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply_next(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [item for item in self.received if path is None or item.path == path]

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self.script.clear()

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down for good: no new connection, and the kept-alive ones are closed too (a client
        reusing one would otherwise still be answered)."""
        self._down = True
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def served(process: subprocess.Popen[Any], port: int, *, seconds: float = 90) -> bool:
    """Wait for a `dsr serve` ``process`` to answer 200 on ``/readyz`` at ``port``; False if it
    exited first or ``seconds`` ran out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False
