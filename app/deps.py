"""FastAPI dependencies: session, clock, settings, crypto, HTTP client and principals.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread,
which costs more than the getter itself on every request.

The session is function-scoped: its unit of work commits when the handler returns and **before**
the response is sent, so a client told ``201`` can read what it wrote on any connection, and a
commit that fails answers ``503`` instead of a success that was never stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import Actor
from app.clock import Clock
from app.config import Settings
from app.crypto import Crypto
from app.db import Database
from app.errors import CommitFailed, Forbidden, Unauthenticated
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
    """One unit of work per request (``Database.transaction``), closed before the response.

    A failure of the commit itself (deadlock, failover, dropped connection) becomes
    ``CommitFailed`` (503 + Retry-After): the client retries, with its Idempotency-Key if any.
    """
    database: Database = request.app.state.db
    handler_error: BaseException | None = None
    try:
        async with database.transaction() as session:
            try:
                yield session
            except BaseException as exc:
                handler_error = exc
                raise
    except Exception as exc:
        if exc is handler_error or isinstance(exc, CommitFailed):
            raise
        # Not the handler's error: the COMMIT (or ROLLBACK) at the end of the unit failed.
        raise CommitFailed() from exc


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
# scope="function": the code after ``yield`` (the commit) runs before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
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


@dataclass(frozen=True)
class StaffContext:
    """What every staff handler needs: the unit of work, the time, keys, settings, who acts."""

    session: AsyncSession
    now: datetime
    crypto: Crypto
    settings: Settings
    actor: Actor
    principal: Principal


@dataclass(frozen=True)
class _Unit:
    session: AsyncSession
    now: datetime
    crypto: Crypto
    settings: Settings
    client_ip: str

    def acting(self, principal: Principal) -> StaffContext:
        return StaffContext(
            session=self.session,
            now=self.now,
            crypto=self.crypto,
            settings=self.settings,
            actor=Actor.of(principal, self.client_ip),
            principal=principal,
        )


async def _unit(
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    client_ip: ClientIpDep,
) -> _Unit:
    # One ``now`` per request: the handler, the audit entry and the answer agree on the time.
    return _Unit(session, clock.now(), crypto, settings, client_ip)


_UnitDep = Annotated[_Unit, Depends(_unit)]


async def get_staff_context(principal: StaffPrincipal, unit: _UnitDep) -> StaffContext:
    return unit.acting(principal)


async def get_officer_context(principal: OfficerPrincipal, unit: _UnitDep) -> StaffContext:
    return unit.acting(principal)


async def get_decider_context(principal: DeciderPrincipal, unit: _UnitDep) -> StaffContext:
    return unit.acting(principal)


# Any staff role / privacy officer or admin / the privacy officer alone.
StaffDep = Annotated[StaffContext, Depends(get_staff_context)]
OfficerDep = Annotated[StaffContext, Depends(get_officer_context)]
DeciderDep = Annotated[StaffContext, Depends(get_decider_context)]
