"""The privacy center (/privacy/): the homepage menu where data subjects exercise their rights.

Thin page routers over the same services as the API (``app/routers/requests.py``): the
subject's own requests, withdrawal, objection and the access report. The start page and
verification are in ``privacy_verify.py``, the new-request forms in ``privacy_forms.py``.
Texts: ``privacy.*`` in ``app/web/messages``; templates: ``app/web/templates/privacy/``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.deps import (
    ClientIpDep,
    ClockDep,
    CryptoDep,
    SessionDep,
    SettingsDep,
)
from app.fulfilment import handoff
from app.fulfilment.reports.html import (
    render_access_report_html,
    report_content_security_policy,
)
from app.models.requests import OPEN_STATUSES
from app.requests import decisions, objections, queries
from app.security import Principal
from app.web.deps import PagesDep, PrivacySubject, TranslatorDep
from app.web.i18n import Translator

router = APIRouter(prefix="/privacy", include_in_schema=False)

REQUESTS = "/privacy/requests"
WITHDRAWABLE = frozenset({"received", "in_review"})
MAX_OBJECTION = 2000


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _my_request(
    session: AsyncSession,
    *,
    principal: Principal,
    request_id: uuid.UUID,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    """One of the signed-in subject's requests (another subject's: NotFound, a 404 page)."""
    return await queries.get_subject_request(
        session,
        crypto=crypto,
        settings=settings,
        now=now,
        request_id=request_id,
        subject_index=principal.subject,
    )


# -- my requests ------------------------------------------------------------------------------


@router.get("/requests")
async def my_requests(
    request: Request,
    pages: PagesDep,
    principal: PrivacySubject,
    session: SessionDep,
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
    session: SessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    now = clock.now()
    detail = await _my_request(
        session,
        principal=principal,
        request_id=request_id,
        crypto=crypto,
        settings=settings,
        now=now,
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
    session: SessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    detail = await _my_request(
        session,
        principal=principal,
        request_id=request_id,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
    )
    return pages.render(request, "privacy/withdraw.html", {"r": detail, "signed_in": True})


@router.post("/requests/{request_id}/withdraw")
async def withdraw(
    request_id: uuid.UUID,
    principal: PrivacySubject,
    session: SessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
) -> RedirectResponse:
    await decisions.withdraw_request(
        session,
        crypto=crypto,
        settings=settings,
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
    session: SessionDep,
    crypto: CryptoDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HTMLResponse:
    detail = await _my_request(
        session,
        principal=principal,
        request_id=request_id,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
    )
    return _objection_page(request, pages, detail)


@router.post("/requests/{request_id}/objection")
async def object_to_decision(
    request_id: uuid.UUID,
    request: Request,
    pages: PagesDep,
    t: TranslatorDep,
    principal: PrivacySubject,
    session: SessionDep,
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
        detail = await _my_request(
            session,
            principal=principal,
            request_id=request_id,
            crypto=crypto,
            settings=settings,
            now=clock.now(),
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
    session: SessionDep,
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
        settings=settings,
        lang=pages.locale(request),
        back=(f"{REQUESTS}/{request_id}", _back_label(t)),
    )
    policy = report_content_security_policy(page, frame_ancestors=settings.frame_ancestors)
    return HTMLResponse(page, headers={"Content-Security-Policy": policy})


def _back_label(t: Translator) -> str:
    return t("privacy.report.back")
