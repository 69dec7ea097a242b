"""FastAPI dependencies: session, clock, settings, crypto, HTTP client and principals.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread,
which costs more than the getter itself on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.clock import Clock
from app.config import Settings
from app.crypto import Crypto
from app.db import Database
from app.errors import DomainError, Forbidden, Unauthenticated
from app.security import Principal, Role, TokenService
from app.subjects import identifiers


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_clock(request: Request) -> Clock:
    return request.app.state.clock


async def get_crypto(request: Request) -> Crypto:
    return request.app.state.crypto


async def get_http(request: Request) -> httpx.AsyncClient:
    return request.app.state.http


async def get_database(request: Request) -> Database:
    return request.app.state.db


async def get_tokens(request: Request) -> TokenService:
    return request.app.state.tokens


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: commit when the handler returns, roll back on error."""
    database: Database = request.app.state.db
    async with database.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except DomainError as exc:
            # An error that records state (a wrong one-time code) keeps its changes.
            await (session.commit() if exc.keep_changes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for hot read-only paths: autocommit, so no BEGIN/COMMIT round trips."""
    database: Database = request.app.state.db
    async with database.read_sessionmaker() as session:
        yield session


async def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ClockDep = Annotated[Clock, Depends(get_clock)]
CryptoDep = Annotated[Crypto, Depends(get_crypto)]
HttpDep = Annotated[httpx.AsyncClient, Depends(get_http)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]
ClientIpDep = Annotated[str, Depends(client_ip)]

_bearer = HTTPBearer(auto_error=False)


async def get_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    tokens: TokensDep,
    clock: ClockDep,
    http: HttpDep,
    session: SessionDep,
    crypto: CryptoDep,
) -> Principal:
    """The verified caller (any issuer, any kind); 401 without a valid bearer token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("A bearer token is required.")
    now = clock.now()
    authentication = await tokens.authenticate(credentials.credentials, now=now, http=http)
    if authentication.identifier is not None:
        # Another issuer (the mobile app) vouched for a phone number: keep it (encrypted), as a
        # confirmed one-time code does, so notices can reach this person.
        await identifiers.remember_identifier(
            session,
            crypto=crypto,
            kind=authentication.identifier.kind,
            value=authentication.identifier.value,
            now=now,
        )
    return authentication.principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_optional_subject(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    tokens: TokensDep,
    clock: ClockDep,
    http: HttpDep,
    session: SessionDep,
    crypto: CryptoDep,
) -> Principal | None:
    """The data subject if a valid subject token is sent, else None (never an error).

    A public endpoint stays public: an expired token (someone verifying again) or a staff token
    is simply not a subject to link to.
    """
    if credentials is None:
        return None
    try:
        principal = await get_principal(credentials, tokens, clock, http, session, crypto)
    except Unauthenticated:
        return None
    return principal if principal.kind == "subject" else None


OptionalSubject = Annotated[Principal | None, Depends(get_optional_subject)]


async def get_current_subject(principal: PrincipalDep) -> Principal:
    if principal.kind != "subject":
        raise Forbidden("This endpoint is for data subjects.")
    return principal


def require_roles(
    *roles: Role,
) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that lets through staff or service principals holding any of ``roles``."""

    async def check(principal: PrincipalDep) -> Principal:
        if principal.kind == "subject" or not principal.has_any(*roles):
            raise Forbidden("Your role may not do this.")
        return principal

    return check


CurrentSubject = Annotated[Principal, Depends(get_current_subject)]
StaffPrincipal = Annotated[
    Principal, Depends(require_roles(Role.SUPPORT_AGENT, Role.PRIVACY_OFFICER, Role.ADMIN))
]
OfficerPrincipal = Annotated[Principal, Depends(require_roles(Role.PRIVACY_OFFICER, Role.ADMIN))]
# Legal decisions (refusals, postponements, objections): the privacy officer alone, not admin.
DeciderPrincipal = Annotated[Principal, Depends(require_roles(Role.PRIVACY_OFFICER))]
ServicePrincipal = Annotated[Principal, Depends(require_roles(Role.SERVICE))]
