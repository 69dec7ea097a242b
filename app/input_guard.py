"""One guard for every route: no NUL character in the path, the query string or the body.

PostgreSQL text and jsonb cannot hold U+0000, so a NUL that reached a query or an INSERT ended
in a 500. Checking each field's type would miss the next field someone adds; this app-wide
dependency answers 422 naming the field instead, before any other dependency runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import Request

from app.errors import InvalidInput

MESSAGE = "must not contain NUL"


class NulCharacter(InvalidInput):
    """Pointers as the validation handler writes them: ``/name`` in the body, ``/query/name``."""

    code = "validation-failed"

    def __init__(self, location: str, pointers: list[str]) -> None:
        super().__init__(
            "One or more fields are invalid; see errors.",
            errors=[
                {"pointer": pointer, "location": location, "message": MESSAGE}
                for pointer in pointers
            ],
        )


def _pointer(parts: tuple[Any, ...]) -> str:
    # The names are input too: never echo the NUL itself.
    text = (str(part).replace("\x00", "").replace("~", "~0").replace("/", "~1") for part in parts)
    return "/" + "/".join(text)


def _nul_paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield at
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield (*at, key)
            yield from _nul_paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, (*at, index))


async def refuse_nul(request: Request) -> None:
    """422 if a NUL character is anywhere in the request's path, query or body."""
    if "\x00" in request.scope["path"]:
        names = [name for name, value in request.path_params.items() if "\x00" in str(value)]
        raise NulCharacter("path", [_pointer(("path", name)) for name in names] or ["/path"])
    query = request.scope["query_string"]
    if b"%00" in query or b"\x00" in query:
        names = [name for name, value in request.query_params.multi_items() if "\x00" in value]
        names += [name for name in request.query_params if "\x00" in name]
        raise NulCharacter("query", [_pointer(("query", name)) for name in names] or ["/query"])
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        # FastAPI parsed a form route's body into ``request.form()`` (cached) before the
        # dependencies run; the stream itself is consumed by then.
        form = await request.form()
        names = [
            name
            for name, value in form.multi_items()
            if "\x00" in name or (isinstance(value, str) and "\x00" in value)
        ]
        if names:
            raise NulCharacter("body", [_pointer((name,)) for name in names])
        return
    body = await request.body()  # cached: the route reads the same bytes
    if kind.endswith("json"):
        # JSON can carry a NUL only as the escape \u0000 (a raw one is not valid JSON); parse
        # only when that escape appears, since "\\u0000" is a backslash and text, not a NUL.
        if b"\\u0000" not in body:
            return
        try:
            document = json.loads(body)
        except ValueError:
            return  # the route answers invalid JSON itself
        paths = list(_nul_paths(document))
        if paths:
            raise NulCharacter("body", [_pointer(path) for path in paths])
