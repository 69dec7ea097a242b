"""The privacy center's way in: the start page, verification by one-time code, sign-out.

The same verification service as ``POST /v1/verifications`` (its limits, its same answer for
known and unknown destinations); a confirmed code's subject token becomes the session cookie.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.deps import ClientIpDep, ClockDep, CryptoDep, SessionDep, SettingsDep, TokensDep
from app.errors import ValidationFailed, VerificationCodeWrong
from app.subjects import verification
from app.web.deps import (
    PRIVACY_SESSION,
    PagesDep,
    PrivacyVisitor,
    TranslatorDep,
)

router = APIRouter(prefix="/privacy", include_in_schema=False)

HOME = "/privacy/"
REQUESTS = "/privacy/requests"
CODE = re.compile(r"^[0-9]{6}$")


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


@router.get("")
async def no_slash() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=308)


@router.get("/")
async def start(request: Request, pages: PagesDep, visitor: PrivacyVisitor) -> HTMLResponse:
    signed_out = request.query_params.get("signed_out") == "1"
    return pages.render(
        request, "privacy/start.html", {"signed_in": visitor is not None, "signed_out": signed_out}
    )


def _verify_page(
    request: Request,
    pages: PagesDep,
    *,
    channel: str = "sms",
    destination: str = "",
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    return pages.render(
        request,
        "privacy/verify.html",
        {"channel": channel, "destination": destination, "errors": errors or {}},
        status=422 if errors else 200,
    )


@router.get("/verify")
async def verify_form(request: Request, pages: PagesDep) -> HTMLResponse:
    return _verify_page(request, pages)


@router.post("/verify")
async def send_code(
    request: Request,
    pages: PagesDep,
    t: TranslatorDep,
    session: SessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
) -> Response:
    form = await request.form()
    channel = _text(form, "channel")
    destination = _text(form, "destination")
    errors: dict[str, str] = {}
    if channel not in ("sms", "email"):
        errors["channel"] = t("privacy.verify.errors.channel")
        channel = "sms"
    elif not destination:
        errors["destination"] = t(f"privacy.verify.errors.empty_{channel}")
    elif len(destination) > 320:
        errors["destination"] = t(f"privacy.verify.errors.invalid_{channel}")
    if errors:
        return _verify_page(request, pages, channel=channel, destination=destination, errors=errors)
    try:
        started = await verification.start_verification(
            session,
            crypto=crypto,
            settings=settings,
            now=clock.now(),
            channel=channel,  # type: ignore[arg-type]
            destination=destination,
            client_ip=client_ip,
            locale=pages.locale(request),
        )
    except ValidationFailed:
        errors["destination"] = t(f"privacy.verify.errors.invalid_{channel}")
        return _verify_page(request, pages, channel=channel, destination=destination, errors=errors)
    # Post/redirect/get: reloading the code page or switching its language sends no second code.
    return _see_other(f"{HOME}verify/{started.id}")


def _code_page(
    request: Request,
    pages: PagesDep,
    verification_id: uuid.UUID,
    errors: dict[str, str] | None = None,
    *,
    dead: bool = False,
    started: verification.VerificationStarted | None = None,
) -> HTMLResponse:
    settings = pages.settings
    return pages.render(
        request,
        "privacy/code.html",
        {
            # Development without a gateway prints the code where `dsr serve` runs: say so.
            "code_on_console": settings.env == "dev"
            and not (settings.sms_gateway_url and settings.email_gateway_url),
            "verification_id": str(verification_id),
            "masked": started.masked_destination if started else None,
            "expires_at": started.expires_at if started else None,
            "errors": errors or {},
            "dead": dead,
        },
        status=422 if errors else 200,
    )


@router.get("/verify/{verification_id}")
async def code_form(
    verification_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    session: SessionDep,
    crypto: CryptoDep,
    clock: ClockDep,
) -> HTMLResponse:
    started = await verification.describe_verification(
        session, crypto=crypto, now=clock.now(), verification_id=verification_id
    )
    return _code_page(request, pages, verification_id, started=started)


@router.post("/verify/{verification_id}")
async def confirm_code(
    verification_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    t: TranslatorDep,
    session: SessionDep,
    crypto: CryptoDep,
    tokens: TokensDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    form = await request.form()
    code = re.sub(r"[\s-]", "", _text(form, "code"))
    if not CODE.match(code):
        errors = {"code": t("privacy.code.errors.format")}
        return _code_page(request, pages, verification_id, errors)
    try:
        confirmed = await verification.confirm_verification(
            session,
            crypto=crypto,
            tokens=tokens,
            settings=settings,
            now=clock.now(),
            verification_id=verification_id,
            code=code,
        )
    except VerificationCodeWrong as exc:
        # The wrong try was recorded; the unit of work commits as this returns normally.
        remaining = int(exc.extra.get("remaining_attempts") or 0)
        if remaining:
            errors = {"code": t("privacy.code.errors.wrong", remaining=remaining)}
            return _code_page(request, pages, verification_id, errors)
        errors = {"code": t("privacy.code.errors.wrong_last")}
        return _code_page(request, pages, verification_id, errors, dead=True)
    response = _see_other(REQUESTS)
    PRIVACY_SESSION.issue(
        response, confirmed.access_token, max_age=confirmed.expires_in, settings=settings
    )
    return response


@router.post("/sign-out")
async def sign_out(settings: SettingsDep) -> RedirectResponse:
    response = _see_other(HOME + "?signed_out=1")
    PRIVACY_SESSION.clear(response, settings=settings)
    return response
