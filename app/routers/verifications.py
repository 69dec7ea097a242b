"""Identity verification (public): one-time codes by SMS or e-mail, exchanged for a token."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.deps import (
    ClientIpDep,
    ClockDep,
    CryptoDep,
    OptionalSubject,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    TokensDep,
)
from app.schemas.common import BODY_PROBLEMS, problems
from app.schemas.verifications import (
    PrincipalPublic,
    TokenPublic,
    VerificationConfirm,
    VerificationCreate,
    VerificationPublic,
)
from app.subjects import verification

router = APIRouter(prefix="/v1", tags=["verification"])


@router.post(
    "/verifications",
    status_code=202,
    response_model=VerificationPublic,
    summary="Send a one-time code to a phone number or e-mail address",
    description="The answer is the same whether or not the destination appears in any record. "
    "At most one code a minute and a few an hour per destination and per client: then 429 with "
    "`Retry-After`. A verified subject may send their subject token as bearer to add this "
    "identifier (of the other kind): the token issued on confirmation then carries both. "
    "Without a valid subject token this is a plain verification.",
    responses=problems(*BODY_PROBLEMS, 429, 503),
    # The bearer is optional here (OpenAPI: ``{}`` allows a call without it), never a 401.
    openapi_extra={"security": [{}, {"HTTPBearer": []}]},
)
async def start_verification(
    body: VerificationCreate,
    session: SessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
    subject: OptionalSubject,
) -> VerificationPublic:
    started = await verification.start_verification(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        channel=body.channel,
        destination=body.destination,
        client_ip=client_ip,
        locale=body.locale or settings.default_locale,
        link_to=subject,
    )
    return VerificationPublic(
        verification_id=started.id,
        expires_at=started.expires_at,
        masked_destination=started.masked_destination,
    )


@router.post(
    "/verifications/{verification_id}/confirm",
    response_model=TokenPublic,
    summary="Exchange the code for a subject token",
    description="Problem codes: `verification-code-wrong` (with `remaining_attempts`), "
    "`verification-expired`, `verification-dead` (too many wrong codes), `verification-used`, "
    "`verification-unknown`.",
    responses=problems(
        *BODY_PROBLEMS,
        404,
        410,
        503,
        described={
            400: "The code is not right, or the body could not be read",
            410: "Expired, dead or already used",
        },
    ),
)
async def confirm_verification(
    verification_id: uuid.UUID,
    body: VerificationConfirm,
    response: Response,
    session: SessionDep,
    crypto: CryptoDep,
    tokens: TokensDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> TokenPublic:
    confirmed = await verification.confirm_verification(
        session,
        crypto=crypto,
        tokens=tokens,
        settings=settings,
        now=clock.now(),
        verification_id=verification_id,
        code=body.code,
    )
    response.headers["Cache-Control"] = "no-store"
    return TokenPublic(access_token=confirmed.access_token, expires_in=confirmed.expires_in)


@router.get(
    "/me",
    response_model=PrincipalPublic,
    tags=["identity"],
    summary="Who the bearer token says you are",
    responses=problems(401),
)
async def me(principal: PrincipalDep) -> PrincipalPublic:
    return PrincipalPublic(
        kind=principal.kind,
        roles=sorted(principal.roles),
        identifier_kinds=list(principal.identifier_kinds),
        amr=list(principal.amr),
        expires_at=principal.expires_at,
    )
