"""The support console's sign-in: OpenID Connect with the company identity provider (code +
PKCE), or, in dev and test only, a clearly marked development sign-in choosing a role.

Either way the browser ends up with the console's session cookie (HttpOnly, SameSite=Strict,
Secure outside dev, path /console) holding a short-lived token of ours with the roles the
provider's token maps to (``app/security.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.audit import trail
from app.audit.actors import Actor
from app.deps import ClientIpDep, ClockDep, CryptoDep, HttpDep, SessionDep, SettingsDep, TokensDep
from app.errors import Forbidden, NotFound
from app.security import STAFF_ROLES, Principal
from app.web import oidc
from app.web.deps import PagesDep, session_principal
from app.web.session import SessionCookie

router = APIRouter(prefix="/console", include_in_schema=False)

CONSOLE_COOKIE = SessionCookie("dsr_console", path="/console")
FLOW_COOKIE = SessionCookie("dsr_console_oidc", path="/console/auth")
DEV_ROLES = ("support_agent", "privacy_officer", "admin")
StaffUserField = Annotated[str, Form(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]

_signed_in = session_principal(CONSOLE_COOKIE, kind="staff")


async def console_principal(principal: Annotated[Principal, Depends(_signed_in)]) -> Principal:
    """The signed-in staff member; a session without a staff role may not use the console."""
    if not principal.roles & STAFF_ROLES:
        raise Forbidden("Your role may not use the console.")
    return principal


ConsolePrincipal = Annotated[Principal, Depends(console_principal)]


def _provider(request: Request, settings: SettingsDep) -> oidc.Provider:
    state = request.app.state
    if getattr(state, "console_oidc", None) is None:
        state.console_oidc = oidc.Provider(issuer=settings.staff_idp_issuer or "")
    provider: oidc.Provider = state.console_oidc
    return provider


def _redirect_uri(request: Request, settings: SettingsDep) -> str:
    # Behind a proxy in production the public address is configured; elsewhere, as asked.
    base = settings.public_base_url if settings.env == "prod" else str(request.base_url)
    return base.rstrip("/") + "/console/auth/callback"


async def _start_session(
    response: Response,
    *,
    session: SessionDep,
    tokens: TokensDep,
    settings: SettingsDep,
    clock: ClockDep,
    principal: Principal,
    method: str,
    client_ip: str,
) -> None:
    hours = settings.console_session_hours
    token = tokens.issue_console_token(
        sub=principal.subject,
        roles=sorted(principal.roles),
        amr=[method],
        now=clock.now(),
        ttl=timedelta(hours=hours),
    )
    CONSOLE_COOKIE.issue(response, token, max_age=int(hours * 3600), settings=settings)
    actor = Actor.of(principal, client_ip)  # staff:<sub>, the most accountable role
    await trail.record(
        session,
        now=clock.now(),
        actor=actor.id,
        role=actor.role,
        action="console.signed_in",
        target_type="staff",
        target_id=principal.subject,
        client_ip=client_ip,
        details={"method": method, "roles": sorted(principal.roles)},
    )


@router.get("/sign-in")
async def sign_in_page(request: Request, pages: PagesDep, settings: SettingsDep) -> Response:
    return pages.render(
        request,
        "console/sign_in.html",
        {
            "oidc": oidc.configured(settings),
            "dev": settings.env in ("dev", "test"),
            "dev_roles": DEV_ROLES,
            "errors": {},
        },
    )


@router.get("/auth/start")
async def oidc_start(
    request: Request, settings: SettingsDep, http: HttpDep, crypto: CryptoDep, clock: ClockDep
) -> Response:
    if not oidc.configured(settings):
        raise NotFound("The identity provider is not configured.")
    provider = await _provider(request, settings).load(http, now=clock.now())
    url, flow = oidc.start(
        provider, settings, redirect_uri=_redirect_uri(request, settings), now=clock.now()
    )
    response = RedirectResponse(url, status_code=303)
    FLOW_COOKIE.issue(
        response, oidc.seal_flow(crypto, flow), max_age=oidc.FLOW_SECONDS, settings=settings
    )
    return response


@router.get("/auth/callback")
async def oidc_callback(
    request: Request,
    settings: SettingsDep,
    http: HttpDep,
    crypto: CryptoDep,
    clock: ClockDep,
    tokens: TokensDep,
    session: SessionDep,
    client_ip: ClientIpDep,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    if not oidc.configured(settings):
        raise NotFound("The identity provider is not configured.")
    flow = oidc.open_flow(crypto, FLOW_COOKIE.read(request), state=state, now=clock.now())
    if not code:
        raise Forbidden("The identity provider did not sign you in.")
    provider = await _provider(request, settings).load(http, now=clock.now())
    id_token = await oidc.exchange_code(provider, settings, http, flow=flow, code=code)
    principal = await tokens.verify_id_token(
        id_token,
        now=clock.now(),
        http=http,
        client_id=settings.console_oidc_client_id or "",
        nonce=flow.nonce,
    )
    if not principal.roles:
        raise Forbidden("Your account has no role in the console.")
    response = RedirectResponse("/console/", status_code=303)
    FLOW_COOKIE.clear(response, settings=settings)
    await _start_session(
        response,
        session=session,
        tokens=tokens,
        settings=settings,
        clock=clock,
        principal=principal,
        method="oidc",
        client_ip=client_ip,
    )
    return response


@router.post("/dev-sign-in")
async def dev_sign_in(
    settings: SettingsDep,
    clock: ClockDep,
    tokens: TokensDep,
    session: SessionDep,
    client_ip: ClientIpDep,
    role: Annotated[str, Form(max_length=32)],
    user: StaffUserField,
) -> Response:
    if settings.env not in ("dev", "test"):
        raise NotFound("There is no development sign-in here.")
    if role not in DEV_ROLES:
        raise Forbidden("Not a staff role.")
    principal = Principal(kind="staff", subject=user, roles=frozenset({role}))
    response = RedirectResponse("/console/", status_code=303)
    await _start_session(
        response,
        session=session,
        tokens=tokens,
        settings=settings,
        clock=clock,
        principal=principal,
        method="dev",
        client_ip=client_ip,
    )
    return response


@router.post("/sign-out")
async def sign_out(settings: SettingsDep) -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303)
    CONSOLE_COOKIE.clear(response, settings=settings)
    return response


def signed_in_context(principal: Principal) -> dict[str, Any]:
    """What the layout shows of who is signed in and what they may do."""
    roles = principal.roles
    return {
        "me": principal.subject,
        "roles": sorted(roles),
        "is_officer": "privacy_officer" in roles,
        "is_manager": bool(roles & {"privacy_officer", "admin"}),
    }
