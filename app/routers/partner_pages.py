"""Pages for partners without a webhook: the confirmation link from a notice e-mail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse

from app.deps import ClientIpDep, ClockDep, CryptoDep, SessionDep
from app.web.deps import PagesDep, TranslatorDep
from app.webhooks import confirmations

router = APIRouter(prefix="/partner", include_in_schema=False)

Token = Annotated[str, Path(max_length=200)]
MAX_REASON = 2000


@router.get("/", response_class=HTMLResponse)
async def partner_index(request: Request, pages: PagesDep) -> HTMLResponse:
    return pages.render(request, "partner/index.html")


@router.get("/confirm/{token}", response_class=HTMLResponse)
async def confirmation_form(
    request: Request,
    token: Token,
    session: SessionDep,
    crypto: CryptoDep,
    clock: ClockDep,
    pages: PagesDep,
) -> HTMLResponse:
    view = await confirmations.open_confirmation(
        session, crypto=crypto, now=clock.now(), token=token
    )
    return pages.render(
        request,
        "partner/confirm.html",
        {
            "view": view,
            "errors": {},
            "form": {"status": "", "reason": ""},
            "action": request.url.path,
        },
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
async def confirm(
    request: Request,
    token: Token,
    session: SessionDep,
    crypto: CryptoDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
    pages: PagesDep,
    t: TranslatorDep,
    notice: Annotated[str, Form(max_length=128)] = "",
    status: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=4000)] = "",
) -> HTMLResponse:
    now = clock.now()
    reason = reason.strip()
    errors: dict[str, str] = {}
    if status not in ("applied", "rejected"):
        errors["status"] = t("partner.confirm.missing_status")
    if status == "rejected" and not reason:
        errors["reason"] = t("partner.confirm.missing_reason")
    if len(reason) > MAX_REASON:
        errors["reason"] = t("partner.confirm.reason_too_long")
    if errors:
        view = await confirmations.open_confirmation(session, crypto=crypto, now=now, token=token)
        return pages.render(
            request,
            "partner/confirm.html",
            {
                "view": view,
                "errors": errors,
                "form": {"status": status, "reason": reason},
                "action": request.url.path,
            },
            status=422,
        )
    view = await confirmations.confirm_by_link(
        session,
        crypto=crypto,
        now=now,
        token=token,
        notice=notice,
        status=status,
        reason=reason or None,
        client_ip=client_ip,
    )
    return pages.render(request, "partner/done.html", {"view": view})
