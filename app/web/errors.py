"""Errors on page areas as pages in the user's language (problem+json stays for the API).

``app/problems.py`` maps every error to a status and a stable code once; for a path under a
page area it calls ``error_page`` instead of writing problem+json. The page names what happened
and what to do next (verify again, wait, go back), never a stack trace or the user's input.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from app.web import page_area
from app.web.deps import PRIVACY_SESSION
from app.web.i18n import Translator
from app.web.templating import Pages

logger = logging.getLogger("dsr.pages")

# Status codes with their own generic text when a code has none.
_GENERIC = {400, 401, 403, 404, 405, 409, 410, 413, 422, 429, 500, 503}

# Headers meant for API clients only.
_API_ONLY_HEADERS = {"www-authenticate"}


def error_key(translator: Translator, *, status: int, code: str, area: str = "privacy") -> str:
    """The catalogue entry for an error: the area's own text for its code or status (the
    console's staff sign in, they do not verify as subjects), else the common one for its code,
    else for its status."""
    generic = f"status_{status if status in _GENERIC else 500}"
    for key in (f"{area}.errors.{code}", f"{area}.errors.{generic}", f"errors.{code}"):
        if translator.has(f"{key}.title"):
            return key
    return f"errors.{generic}"


def _back_href(area: str, path: str) -> str | None:
    """Back to the console request whose action failed, not the start."""
    parts = path.strip("/").split("/")
    if area == "console" and len(parts) >= 4 and parts[1] == "requests":
        return f"/console/requests/{parts[2]}"
    return None


def wait_text(translator: Translator, seconds: int) -> str:
    minutes, rest = divmod(max(1, seconds), 60)
    if minutes and rest:
        return translator("errors.wait.minutes_seconds", minutes=minutes, seconds=rest)
    if minutes:
        return translator("errors.wait.minutes", minutes=minutes)
    return translator("errors.wait.seconds", seconds=rest)


def error_page(
    request: Request,
    *,
    status: int,
    code: str,
    headers: dict[str, str] | None = None,
    retry_after: int | None = None,
) -> Response:
    """The error as a page of its area (``/privacy/…``, ``/console/…``)."""
    kept = {k: v for k, v in (headers or {}).items() if k.lower() not in _API_ONLY_HEADERS}
    pages: Pages = request.app.state.pages
    try:
        translator = Translator(pages.locale(request))
        area = page_area(request.url.path) or "privacy"
        context = {
            "status": status,
            "code": code,
            "key": error_key(translator, status=status, code=code, area=area),
            "sign_in_text": f"{area}.errors.actions.sign_in"
            if translator.has(f"{area}.errors.actions.sign_in")
            else "errors.actions.sign_in",
            "back_href": _back_href(area, request.url.path),
            "wait": wait_text(translator, retry_after) if retry_after else None,
            "home_href": f"/{area}/",
            "sign_in_href": f"/{area}/verify" if area == "privacy" else f"/{area}/sign-in",
            # Signed in to the privacy center (the cookie is there): a way back to the requests.
            "requests_href": "/privacy/requests"
            if area == "privacy" and PRIVACY_SESSION.read(request)
            else None,
            "request_id": request.scope.get("state", {}).get("request_id"),
        }
        return pages.render(request, "error.html", context, status=status, headers=kept)
    except Exception:  # the error page itself must never fail into a stack trace
        logger.exception("error page failed", extra={"event": "pages.error_page_failed"})
        return HTMLResponse(
            "<!doctype html><html lang=ko><title>오류 / Error</title>"
            "<h1>오류가 발생했습니다 / Something went wrong</h1>",
            status_code=status,
            headers=kept,
        )


async def refuse_csrf(scope: Scope, receive: Receive, send: Send) -> None:
    """The CSRF middleware's refusal: a 403 page."""
    response = error_page(Request(scope, receive), status=403, code="csrf-failed")
    await response(scope, receive, send)
