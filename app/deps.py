"""FastAPI dependencies: session, clock, settings, crypto, HTTP client and principals.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread,
which costs more than the getter itself on every request.

The session is function-scoped: its unit of work commits when the handler returns and **before**
the response is sent, so a client told ``201`` can read what it wrote on any connection, and a
commit that fails answers ``503`` instead of a success that was never stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import Actor, ClientAddress
from app.clock import Clock
from app.config import Settings
from app.crypto import Crypto
from app.db import Database
from app.errors import CommitFailed, CredentialsMissing, Forbidden, Unauthenticated
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


@asynccontextmanager
async def committed(database: Database) -> AsyncIterator[AsyncSession]:
    """``Database.transaction`` whose failing COMMIT (deadlock, failover, dropped connection)
    becomes ``CommitFailed`` (503 + Retry-After): the client retries, with its Idempotency-Key
    if any. The body's own errors pass through unchanged."""
    body_error: BaseException | None = None
    try:
        async with database.transaction() as session:
            try:
                yield session
            except BaseException as exc:
                body_error = exc
                raise
    except Exception as exc:
        if exc is body_error or isinstance(exc, CommitFailed):
            raise
        # Not the body's error: the COMMIT (or ROLLBACK) at the end of the unit failed.
        raise CommitFailed() from exc


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work per request (``committed``), closed before the response is sent."""
    async with committed(request.app.state.db) as session:
        yield session


def _client_ip(request: Request) -> ClientAddress:
    address = request.client.host if request.client else "unknown"
    return ClientAddress(address, crypto=request.app.state.crypto)


async def client_ip(request: Request) -> str:
    """The caller's address; the audit trail stores only its hash and sealed form."""
    return _client_ip(request)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ClockDep = Annotated[Clock, Depends(get_clock)]
CryptoDep = Annotated[Crypto, Depends(get_crypto)]
HttpDep = Annotated[httpx.AsyncClient, Depends(get_http)]
# scope="function": the code after ``yield`` (the commit) runs before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
TokensDep = Annotated[TokenService, Depends(get_tokens)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ClientIpDep = Annotated[str, Depends(client_ip)]


async def _authenticate(request: Request, token: str) -> Principal:
    state = request.app.state
    now = state.clock.now()
    authentication = await state.tokens.authenticate(token, now=now, http=state.http)
    if authentication.identifier is not None:
        # Another issuer (the mobile app) vouched for a phone number: keep it (encrypted), as a
        # confirmed one-time code does, so notices can reach this person. Its own unit of work:
        # who the caller is does not depend on what the call then does.
        async with committed(state.db) as session:
            await identifiers.remember_identifier(
                session,
                crypto=state.crypto,
                kind=authentication.identifier.kind,
                value=authentication.identifier.value,
                now=now,
            )
    return authentication.principal


def _bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, as FastAPI's HTTPBearer reads it."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    return token if scheme.lower() == "bearer" and token else None


class BearerPrincipal(HTTPBearer):
    """The verified caller, admitted by ``admit``: one dependency that OpenAPI documents as the
    ``HTTPBearer`` scheme. (The scheme and the check as two dependencies cost FastAPI a second
    dependency to solve on every API call: docs/BENCHMARKS.md, "Usage check".)"""

    def __init__(self, admit: Callable[[Principal], None] | None = None) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer")
        self.admit = admit

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        token = _bearer_token(request)
        if token is None:
            raise CredentialsMissing("A bearer token is required.")
        principal = await _authenticate(request, token)
        if self.admit is not None:
            self.admit(principal)
        return principal


class OptionalSubjectScheme(HTTPBearer):
    """The data subject if a valid subject token is sent, else None (never an error).

    A public endpoint stays public: an expired token (someone verifying again) or a staff token
    is simply not a subject to link to.
    """

    def __init__(self) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer")

    async def __call__(self, request: Request) -> Principal | None:  # type: ignore[override]
        token = _bearer_token(request)
        if token is None:
            return None
        try:
            principal = await _authenticate(request, token)
        except Unauthenticated:
            return None
        return principal if principal.kind == "subject" else None


def _subject_only(principal: Principal) -> None:
    if principal.kind != "subject":
        raise Forbidden("This endpoint is for data subjects.")


def require_roles(*roles: Role) -> BearerPrincipal:
    """A dependency that lets through staff or service principals holding any of ``roles``."""

    def admit(principal: Principal) -> None:
        if principal.kind == "subject" or not principal.has_any(*roles):
            raise Forbidden("Your role may not do this.")

    return BearerPrincipal(admit)


# The verified caller (any issuer, any kind); 401 without a valid bearer token.
PrincipalDep = Annotated[Principal, Depends(BearerPrincipal())]
OptionalSubject = Annotated[Principal | None, Depends(OptionalSubjectScheme())]
# A data subject's verified token; 401 without one, 403 for anyone else.
CurrentSubject = Annotated[Principal, Depends(BearerPrincipal(_subject_only))]
StaffPrincipal = Annotated[
    Principal, Depends(require_roles(Role.SUPPORT_AGENT, Role.PRIVACY_OFFICER, Role.ADMIN))
]
OfficerPrincipal = Annotated[Principal, Depends(require_roles(Role.PRIVACY_OFFICER, Role.ADMIN))]
# Legal decisions (refusals, postponements, objections): the privacy officer alone, not admin.
DeciderPrincipal = Annotated[Principal, Depends(require_roles(Role.PRIVACY_OFFICER))]
ServicePrincipal = Annotated[Principal, Depends(require_roles(Role.SERVICE))]


@dataclass(frozen=True)
class Call:
    """What a handler reads from the app for this call: one ``now``, keys, settings, the
    caller's address, and the database for a hot path's ``autocommit`` connection."""

    now: datetime
    crypto: Crypto
    settings: Settings
    client_ip: ClientAddress
    database: Database


async def get_call(request: Request) -> Call:
    state = request.app.state
    # One ``now`` per request: the handler, the audit entry and the answer agree on the time.
    return Call(state.clock.now(), state.crypto, state.settings, _client_ip(request), state.db)


CallDep = Annotated[Call, Depends(get_call)]


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


async def _unit(request: Request, session: SessionDep) -> _Unit:
    call = await get_call(request)
    return _Unit(session, call.now, call.crypto, call.settings, call.client_ip)


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
