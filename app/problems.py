"""The one place errors are answered: RFC 9457 application/problem+json for the API, and a page
in the user's language for paths under a page area (``/privacy/``, ``/console/``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

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


def _pointer(loc: tuple[Any, ...], document: Any = None) -> str:
    """JSON pointer into the body for a pydantic location like ('body', 'items', 0, 'name')."""
    if loc and loc[0] == "body":
        parts = [str(part) for part in _in_document(loc[1:], document)]
    else:
        parts = [str(part) for part in loc]
    return "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _in_document(parts: tuple[Any, ...], document: Any) -> list[Any]:
    """The location as a path in the body sent: without the tag pydantic inserts for a member of
    a tagged union (``('verification', 'agent', 'check')`` is ``/verification/check``)."""
    kept: list[Any] = []
    node = document
    for position, part in enumerate(parts):
        if isinstance(node, dict) and part not in node:
            tags = {value for value in node.values() if isinstance(value, str)}
            if position < len(parts) - 1 and part in tags:
                continue  # the member's tag (the discriminator's value), not a key of the body
            node = None
        elif isinstance(node, dict) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        else:
            node = None
        kept.append(part)
    return kept


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


# pydantic prefixes the message of a ValueError/AssertionError raised in a validator.
_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type")
    context = error.get("ctx") or {}
    # pydantic's own wording of these quotes what was sent ("found `n` at 0", "Input tag 'x'").
    if kind in ("uuid_parsing", "uuid_type"):
        return "Input should be a valid UUID."
    if kind == "union_tag_invalid":
        return f"Input should be {context.get('expected_tags', 'one of the documented values')}."
    if kind == "union_tag_not_found":
        return "Field required."
    if kind == "missing" and tuple(error.get("loc", ())) == ("body",):
        return "A JSON body is required."
    message = str(error.get("msg", "invalid"))
    for prefix in _MESSAGE_PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _is_json(content_type: str | None) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _expects_json_body(request: Request) -> bool:
    body_field = getattr(request.scope.get("route"), "body_field", None)
    return body_field is not None and not isinstance(body_field.field_info, params.Form)


def _unsupported_media_type(request: Request) -> JSONResponse:
    # Accept-Post / Accept-Patch name what the endpoint takes (RFC 5789, W3C LDP).
    accept = {"POST": "Accept-Post", "PATCH": "Accept-Patch"}.get(request.method)
    headers = {accept: "application/json"} if accept else {}
    return problem(
        request,
        status=415,
        code="unsupported-media-type",
        title="Unsupported media type",
        detail="Send the body as JSON, with the header Content-Type: application/json.",
        headers=headers or None,
    )


def _malformed_json(request: Request, error: dict[str, Any], document: Any) -> JSONResponse:
    """The parser's reason and where it stopped; a character offset is not a JSON pointer."""
    loc = tuple(error.get("loc", ()))
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    reason = str((error.get("ctx") or {}).get("error") or "not valid JSON")
    detail = f"The body is not valid JSON: {reason}"
    if position is not None:
        detail += f" at character {position}"
        if isinstance(document, str | bytes):
            text = document if isinstance(document, str) else document.decode("utf-8", "replace")
            line = text.count("\n", 0, position) + 1
            column = position - (text.rfind("\n", 0, position) + 1) + 1
            detail += f" (line {line}, column {column})"
    return problem(
        request,
        status=422,
        code="validation-failed",
        title="The request is not valid",
        detail=detail + ".",
        errors=[{"location": "body", "message": detail + ".", "type": "json_invalid"}],
    )


def _location(error: dict[str, Any]) -> tuple[Any, ...]:
    """Where the error is; a tagged union's missing or unknown tag is at its discriminator."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
        if discriminator:
            return (*loc, discriminator)
    return loc


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    whole_body = [
        error
        for error in raw
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") != "missing"
    ]  # a body sent in another format; no body at all is a 422 saying one is required
    if (
        whole_body
        and _expects_json_body(request)
        and not _is_json(request.headers.get("content-type"))
    ):
        return _unsupported_media_type(request)
    for error in raw:
        if error.get("type") == "json_invalid":
            return _malformed_json(request, error, exc.body)
    # Never echo the input: it is often personal data.
    errors = [
        {
            "pointer": _pointer(_location(error), exc.body),
            "location": error.get("loc", ("body",))[0],
            "message": _message(error),
            "type": error.get("type", "value_error"),
        }
        for error in raw
    ]
    return answer(
        request,
        status=422,
        code="validation-failed",
        title="The request is not valid",
        detail="One or more fields are invalid; see errors.",
        errors=errors,
    )


PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path.

    Starlette's 405 names the methods of the first route whose path matched, but GET and POST
    on one path are two routes: its ``Allow`` listed one of them. Asked of the router itself
    (each method tried), so included routers need no walking.
    """
    routes = [route for route in request.app.router.routes if isinstance(route, BaseRoute)]
    allowed = [
        method
        for method in PROBED_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http-error", "Request failed"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return answer(
        request,
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        headers=headers or None,
    )


async def unhandled_error(request: Request, exc: Exception) -> Response:
    """The 500 answer to an error nothing else answered (``UnhandledErrorMiddleware``)."""
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
    # The last resort, outside every middleware: an error of a middleware itself. The app's own
    # errors are answered inside them (app.middleware.UnhandledErrorMiddleware).
    app.add_exception_handler(Exception, unhandled_error)
