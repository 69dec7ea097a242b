"""The one place errors are answered: RFC 9457 application/problem+json for the API, and a page
in the user's language for paths under a page area (``/privacy/``, ``/console/``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.errors import DomainError, RateLimited, problem_type
from app.web import page_area
from app.web.errors import error_page

logger = logging.getLogger("dsr.errors")

_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Not allowed for this role"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        "request_id": request.scope.get("state", {}).get("request_id"),
    }
    body.update({key: value for key, value in extra.items() if value is not None})
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def answer(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    retry_after: int | None = None,
    **extra: Any,
) -> Response:
    """A page for a page area, problem+json for everything else."""
    if page_area(request.url.path) is not None:
        return error_page(
            request, status=status, code=code, headers=headers, retry_after=retry_after
        )
    return problem(
        request, status=status, code=code, title=title, detail=detail, headers=headers, **extra
    )


def _pointer(loc: tuple[Any, ...]) -> str:
    """JSON pointer into the body for a pydantic location like ('body', 'items', 0, 'name')."""
    parts = [str(part) for part in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return answer(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers or None,
        retry_after=exc.retry_after if isinstance(exc, RateLimited) else None,
        **exc.extra,
    )


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Never echo the input: it is often personal data.
    errors = [
        {
            "pointer": _pointer(tuple(error.get("loc", ()))),
            "location": error.get("loc", ("body",))[0],
            "message": error.get("msg", "invalid"),
            "type": error.get("type", "value_error"),
        }
        for error in exc.errors()
    ]
    return answer(
        request,
        status=422,
        code="validation-failed",
        title="The request is not valid",
        detail="One or more fields are invalid; see errors.",
        errors=errors,
    )


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http-error", "Request failed"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return answer(
        request,
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        headers=getattr(exc, "headers", None),
    )


async def _unhandled(request: Request, exc: Exception) -> Response:
    logger.error(
        "unhandled error",
        extra={"event": "http.unhandled", "error_type": type(exc).__name__},
    )
    return answer(
        request,
        status=500,
        code="internal-error",
        title="Internal error",
        detail="The service could not complete the request. Quote the request id to support.",
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unhandled)
