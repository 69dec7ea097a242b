"""Page dependencies: the renderer, the language, and the signed-in principal of an area."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import Depends, Request

from app.deps import ClockDep, HttpDep, TokensDep
from app.errors import SessionExpired, SessionRequired, Unauthenticated
from app.security import Principal
from app.web.i18n import Translator
from app.web.session import SessionCookie
from app.web.templating import Pages


async def get_pages(request: Request) -> Pages:
    return request.app.state.pages


PagesDep = Annotated[Pages, Depends(get_pages)]


async def get_translator(request: Request, pages: PagesDep) -> Translator:
    return Translator(pages.locale(request))


TranslatorDep = Annotated[Translator, Depends(get_translator)]


def session_principal(
    cookie: SessionCookie, *, kind: Literal["subject", "staff"]
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: the principal whose token the area's cookie holds, verified now.

    No cookie: ``SessionRequired``; a cookie whose token no longer verifies (expired, another
    key, tampered) or names another kind of principal: ``SessionExpired``. Both become pages.
    """

    async def current(
        request: Request, tokens: TokensDep, clock: ClockDep, http: HttpDep
    ) -> Principal:
        token = cookie.read(request)
        if token is None:
            raise SessionRequired()
        try:
            authentication = await tokens.authenticate(token, now=clock.now(), http=http)
        except Unauthenticated:
            raise SessionExpired() from None
        if authentication.principal.kind != kind:
            raise SessionExpired()
        return authentication.principal

    return current
