"""Pure ASGI middleware: request id, body size limit, access log and metrics, security headers,
and the answer to an error no handler answered."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem_type
from app.observability import Metrics, request_id_var
from app.web import PAGE_AREAS

logger = logging.getLogger("dsr.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Accept a well-formed X-Request-ID or make one; echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # 128 random bits in hex, as uuid4().hex was, without building a UUID on every request.
        request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Answer 413 problem+json for bodies over the limit, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit, then replay what was read.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await self._reject(scope, send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        await self.app(scope, _replay(chunks, None, receive), send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        body = json.dumps(
            {
                "type": problem_type("payload-too-large"),
                "title": "Request body too large",
                "status": 413,
                "detail": f"The body exceeds {self.max_bytes} bytes.",
                "code": "payload-too-large",
                "instance": scope.get("path", ""),
                "request_id": scope.get("state", {}).get("request_id"),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    queue: list[Message] = (
        [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
        if pending is None
        else [pending]
    )

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


class AccessLogMiddleware:
    """One log line and metrics per request, keyed by the route template, never the raw path."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Each label set's counter and histogram, looked up once (route templates and statuses
        # are few: the set stays small).
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            series = self._series.get((method, route, status))
            if series is None:
                series = self._series[(method, route, status)] = (
                    self.metrics.http_requests.labels(method, route, str(status)),
                    self.metrics.http_latency.labels(method, route),
                )
            series[0].inc()
            series[1].observe(elapsed)
            logger.info(
                "request",
                extra={
                    "event": "http.request",
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "request_id": request_id_var.get(),
                },
            )


def content_security_policy(*, frame_ancestors: str, relaxed: bool = False) -> str:
    """The pages' policy: everything from this origin, no inline script, embedding by setting.

    ``relaxed`` is for the self-hosted API docs only: Swagger UI and ReDoc style their widgets
    inline and ReDoc searches in a blob: worker. Scripts stay 'self' there too.
    """
    style = "'self' 'unsafe-inline'" if relaxed else "'self'"
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        f"style-src {style}",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {frame_ancestors}",
    ]
    if relaxed:
        directives.append("worker-src 'self' blob:")
    return "; ".join(directives)


class SecurityHeadersMiddleware:
    """Security headers on every answer, in one place.

    - ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` everywhere;
    - a strict ``Content-Security-Policy`` (``frame-ancestors`` from ``DSR_FRAME_ANCESTORS``)
      unless the answer carries its own (the self-contained access report does, stricter);
      ``X-Frame-Options: DENY`` while nobody may embed;
    - ``Cache-Control: no-store`` on every ``/v1/`` answer except the public reference lists,
      and on every page (they show personal data); static assets keep their own caching;
    - ``Strict-Transport-Security`` when ``hsts`` (production).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        frame_ancestors: str = "'none'",
        hsts: bool = False,
        no_store_prefixes: tuple[str, ...] = ("/v1/", *PAGE_AREAS),
        public_paths: frozenset[str] = frozenset(),
        relaxed_paths: frozenset[str] = frozenset({"/docs", "/redoc"}),
    ) -> None:
        self.app = app
        self.no_store_prefixes = no_store_prefixes
        self.public_paths = public_paths
        self.relaxed_paths = relaxed_paths
        self.csp = content_security_policy(frame_ancestors=frame_ancestors)
        self.relaxed_csp = content_security_policy(frame_ancestors=frame_ancestors, relaxed=True)
        self.frame_options = "DENY" if frame_ancestors.strip() == "'none'" else None
        self.hsts = hsts
        fixed = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        if self.frame_options:
            fixed.append((b"x-frame-options", self.frame_options.encode()))
        if hsts:
            fixed.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        self._fixed = fixed
        self._csp, self._relaxed_csp = self.csp.encode(), self.relaxed_csp.encode()
        self._replaced = frozenset(name for name, _ in fixed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        no_store = path.startswith(self.no_store_prefixes) and path not in self.public_paths
        csp = self._relaxed_csp if path in self.relaxed_paths else self._csp

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # One pass: ours replace the answer's own, but its Content-Security-Policy stays.
                headers = []
                has_csp = False
                for name, value in message.get("headers", ()):
                    lowered = name.lower()
                    if lowered == b"content-security-policy":
                        has_csp = True
                    elif lowered in self._replaced or (no_store and lowered == b"cache-control"):
                        continue
                    headers.append((name, value))
                headers.extend(self._fixed)
                if not has_csp:
                    headers.append((b"content-security-policy", csp))
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UnhandledErrorMiddleware:
    """An error no handler answered becomes its 500 answer here, inside the other middleware.

    Starlette answers an unhandled error from its outermost layer, past every middleware: that
    answer had no security headers, no ``X-Request-ID``, and the error was raised on to the
    server, which dropped the connection. Added innermost, this one answers with ``handler``
    (problem+json, or a page in a page area) unless the answer had already started.
    """

    def __init__(
        self, app: ASGIApp, handler: Callable[[Request, Exception], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:
                raise
            response = await self.handler(Request(scope, receive), exc)
            await response(scope, receive, send)
