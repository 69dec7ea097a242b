"""The privacy center (/privacy/): the homepage menu where data subjects exercise their rights.

Thin page routers over the same services as the API (``app/routers/verifications.py``,
``app/routers/requests.py``): verification by one-time code with its limits, the subject's own
requests, withdrawal, objection and the access report. New-request forms are in
``privacy_forms.py``. Texts: ``privacy.*`` in ``app/web/messages``; templates:
``app/web/templates/privacy/``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.audit.actors import Actor
from app.deps import (
    ClientIpDep,
    ClockDep,
    CryptoDep,
    SettingsDep,
    TokensDep,
)
from app.errors import ValidationFailed, VerificationCodeWrong
from app.fulfilment import handoff
from app.fulfilment.reports.html import (
    render_access_report_html,
    report_content_security_policy,
)
from app.models.requests import OPEN_STATUSES
from app.requests import decisions, objections, queries
from app.subjects import verification
from app.web.deps import (
    PRIVACY_SESSION,
    PagesDep,
    PageSessionDep,
    PrivacySubject,
    PrivacyVisitor,
    TranslatorDep,
)
from app.web.i18n import Translator

router = APIRouter(prefix="/privacy", include_in_schema=False)

HOME = "/privacy/"
REQUESTS = "/privacy/requests"
CODE = re.compile(r"^[0-9]{6}$")
WITHDRAWABLE = frozenset({"received", "in_review"})
MAX_OBJECTION = 2000


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


# -- start and verification ------------------------------------------------------------------


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
    session: PageSessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
) -> HTMLResponse:
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
    return pages.render(
        request,
        "privacy/code.html",
        {
            "verification_id": str(started.id),
            "masked": started.masked_destination,
            "channel": channel,
            "expires_at": started.expires_at,
            "errors": {},
        },
    )


def _code_page(
    request: Request,
    pages: PagesDep,
    verification_id: uuid.UUID,
    errors: dict[str, str] | None = None,
    *,
    dead: bool = False,
) -> HTMLResponse:
    return pages.render(
        request,
        "privacy/code.html",
        {
            "verification_id": str(verification_id),
            "masked": None,
            "channel": None,
            "expires_at": None,
            "errors": errors or {},
            "dead": dead,
        },
        status=422 if errors else 200,
    )


@router.get("/verify/{verification_id}")
async def code_form(verification_id: uuid.UUID, request: Request, pages: PagesDep) -> HTMLResponse:
    return _code_page(request, pages, verification_id)


@router.post("/verify/{verification_id}")
async def confirm_code(
    verification_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    t: TranslatorDep,
    session: PageSessionDep,
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


# -- my requests ------------------------------------------------------------------------------


@router.get("/requests")
async def my_requests(
    request: Request,
    pages: PagesDep,
    principal: PrivacySubject,
    session: PageSessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    items = await queries.list_subject_requests(
        session, settings=settings, now=clock.now(), subject_index=principal.subject
    )
    return pages.render(
        request, "privacy/requests.html", {"items": items, "signed_in": True, "nav": "requests"}
    )


@router.get("/requests/{request_id}")
async def request_detail(
    request_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    principal: PrivacySubject,
    session: PageSessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    now = clock.now()
    detail = await queries.get_subject_request(
        session,
        crypto=crypto,
        settings=settings,
        now=now,
        request_id=request_id,
        subject_index=principal.subject,
    )
    history = await queries.subject_history(
        session, request_id=request_id, subject_index=principal.subject
    )
    until = detail["objection_until"]
    objectable = (
        until is not None
        and now <= datetime.fromisoformat(until)
        and not any(o["status"] == "open" for o in detail["objections"])
    )
    return pages.render(
        request,
        "privacy/detail.html",
        {
            "r": detail,
            "history": history,
            "can_withdraw": detail["status"] in WITHDRAWABLE,
            "can_object": objectable,
            "has_report": detail["type"] == "access"
            and detail["status"] in ("completed", "partially_completed"),
            "is_open": detail["status"] in OPEN_STATUSES,
            "done": request.query_params.get("done"),
            "signed_in": True,
        },
    )


@router.get("/requests/{request_id}/withdraw")
async def withdraw_form(
    request_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    principal: PrivacySubject,
    session: PageSessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    detail = await queries.get_subject_request(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        request_id=request_id,
        subject_index=principal.subject,
    )
    return pages.render(request, "privacy/withdraw.html", {"r": detail, "signed_in": True})


@router.post("/requests/{request_id}/withdraw")
async def withdraw(
    request_id: uuid.UUID,
    principal: PrivacySubject,
    session: PageSessionDep,
    crypto: CryptoDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
) -> RedirectResponse:
    await decisions.withdraw_request(
        session,
        crypto=crypto,
        now=clock.now(),
        request_id=request_id,
        actor=Actor.subject(principal.subject, client_ip),
        subject_index=principal.subject,
    )
    return _see_other(f"{REQUESTS}/{request_id}?done=withdrawn")


def _objection_page(
    request: Request,
    pages: PagesDep,
    detail: dict[str, Any],
    *,
    reason: str = "",
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    return pages.render(
        request,
        "privacy/objection.html",
        {
            "r": detail,
            "reason": reason,
            "errors": errors or {},
            "max_length": MAX_OBJECTION,
            "signed_in": True,
        },
        status=422 if errors else 200,
    )


@router.get("/requests/{request_id}/objection")
async def objection_form(
    request_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    principal: PrivacySubject,
    session: PageSessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    detail = await queries.get_subject_request(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        request_id=request_id,
        subject_index=principal.subject,
    )
    return _objection_page(request, pages, detail)


@router.post("/requests/{request_id}/objection")
async def object_to_decision(
    request_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    t: TranslatorDep,
    principal: PrivacySubject,
    session: PageSessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
) -> Response:
    form = await request.form()
    reason = _text(form, "reason")
    error = None
    if not reason:
        error = t("privacy.objection.errors.empty")
    elif len(reason) > MAX_OBJECTION:
        error = t("privacy.objection.errors.long", max=MAX_OBJECTION)
    if error:
        detail = await queries.get_subject_request(
            session,
            crypto=crypto,
            settings=settings,
            now=clock.now(),
            request_id=request_id,
            subject_index=principal.subject,
        )
        return _objection_page(request, pages, detail, reason=reason, errors={"reason": error})
    await objections.submit_objection(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        request_id=request_id,
        subject_index=principal.subject,
        reason=reason,
        actor=Actor.subject(principal.subject, client_ip),
    )
    return _see_other(f"{REQUESTS}/{request_id}?done=objected")


@router.get("/requests/{request_id}/report")
async def access_report(
    request_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    t: TranslatorDep,
    principal: PrivacySubject,
    session: PageSessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
) -> HTMLResponse:
    """The access report as the API's readable page, with a way back and A4 print rules."""
    report, _ = await handoff.download_access_report(
        session,
        crypto=crypto,
        now=clock.now(),
        request_id=request_id,
        subject_index=principal.subject,
        client_ip=client_ip,
    )
    page = render_access_report_html(
        report,
        lang=pages.locale(request),
        back=(f"{REQUESTS}/{request_id}", _back_label(t)),
    )
    policy = report_content_security_policy(page, frame_ancestors=settings.frame_ancestors)
    return HTMLResponse(page, headers={"Content-Security-Policy": policy})


def _back_label(t: Translator) -> str:
    return t("privacy.report.back")
