"""CSRF protection for every page form, in one place: a signed double-submit cookie.

On any request to a page area the middleware makes sure the browser holds a random
``dsr_csrf`` cookie (HttpOnly, SameSite=Strict) and puts the matching form token, an HMAC of
that cookie under the service's key, in ``scope["state"]["csrf_token"]`` for the templates'
hidden ``csrf_token`` field. A POST (PUT, PATCH, DELETE) to a page area must send that token in
the form or in an ``X-CSRF-Token`` header; otherwise it is refused with a 403 page, before any
handler runs. An attacker who can plant a cookie still cannot make its token without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web import page_area

CSRF_COOKIE = "dsr_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# Renders the refusal (a page in the user's language); given the scope, receive and send.
Refusal = Callable[[Scope, Receive, Send], Awaitable[None]]


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(name)
            if found:
                return found
    return None


class CsrfMiddleware:
    """Issue the double-submit cookie on page requests; refuse unsafe ones without the token."""

    def __init__(self, app: ASGIApp, *, key: bytes, secure: bool, refuse: Refusal) -> None:
        self.app = app
        self.key = hashlib.sha256(b"qx-dsr csrf\x00" + key).digest()
        self.secure = secure
        self.refuse = refuse

    def token_for(self, cookie: str) -> str:
        mac = hmac.new(self.key, cookie.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or page_area(scope["path"]) is None:
            await self.app(scope, receive, send)
            return
        cookie = _cookie(scope, CSRF_COOKIE)
        fresh = cookie is None or not 20 <= len(cookie) <= 100
        if fresh:
            cookie = secrets.token_urlsafe(32)
        assert cookie is not None
        expected = self.token_for(cookie)
        scope.setdefault("state", {})["csrf_token"] = expected

        if scope["method"] not in SAFE_METHODS:
            body, receive = await _read_body(receive)
            sent = _sent_token(scope, body)
            if fresh or sent is None or not hmac.compare_digest(sent, expected):
                await self.refuse(scope, receive, send)
                return

        if not fresh:
            await self.app(scope, receive, send)
            return
        attributes = f"{CSRF_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict"
        if self.secure:
            attributes += "; Secure"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", attributes)
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _sent_token(scope: Scope, body: bytes) -> str | None:
    headers = dict(scope["headers"])
    if CSRF_HEADER in headers:
        return headers[CSRF_HEADER].decode("latin-1")
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type != b"application/x-www-form-urlencoded":
        return None  # page forms are urlencoded; anything else must use the header
    values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=1000).get(CSRF_FIELD)
    return values[0] if values else None


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (already capped by the body-size middleware) and a receive replaying it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
