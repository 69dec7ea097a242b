"""Page sessions: an HttpOnly, SameSite=Strict cookie holding a short-lived signed token.

The token is one the service issues and verifies anyway (``TokenService``): for the privacy
center the subject token a confirmed one-time code yields, bound to the verified identifier's
blind index and expiring with it. Each page area has its own cookie name and path.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from app.config import Settings


@dataclass(frozen=True)
class SessionCookie:
    """One area's session cookie: where it lives and how it is set, read and cleared."""

    name: str
    path: str = "/"

    def read(self, request: Request) -> str | None:
        value = request.cookies.get(self.name)
        return value or None

    def issue(self, response: Response, token: str, *, max_age: int, settings: Settings) -> None:
        response.set_cookie(
            self.name,
            token,
            max_age=max_age,
            path=self.path,
            httponly=True,
            secure=settings.secure_cookies,
            samesite="strict",
        )

    def clear(self, response: Response, *, settings: Settings) -> None:
        response.delete_cookie(
            self.name,
            path=self.path,
            httponly=True,
            secure=settings.secure_cookies,
            samesite="strict",
        )
