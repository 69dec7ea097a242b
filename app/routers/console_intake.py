"""The console's phone and counter intake: the agent checked the subject (or a representative's
proof) and takes the request, through the same intake service as ``POST /v1/staff/requests``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.deps import ClientIpDep, ClockDep, CryptoDep, SessionDep, SettingsDep
from app.errors import InvalidInput
from app.models.requests import TYPES
from app.requests import intake
from app.routers.console import actor_of, console_page, redirect_after
from app.routers.console_auth import ConsolePrincipal
from app.schemas.staff import StaffRequestCreate
from app.subjects.identifiers import normalise
from app.vocabulary import ITEMS, PURPOSES, TYPE_LABELS
from app.web.deps import PagesDep, TranslatorDep

router = APIRouter(prefix="/console", include_in_schema=False)


def _intake_body(form: dict[str, Any]) -> dict[str, Any]:
    kind = form.get("type", "")
    body: dict[str, Any] = {"type": kind}
    if kind == "correction":
        body["corrections"] = [
            {"item": form.get("item", ""), "new_value": form.get("new_value", "")}
        ]
    elif kind in ("suspension", "consent_withdrawal"):
        body["purposes"] = form.getlist("purposes") if hasattr(form, "getlist") else []
    identifiers = {k: form[k].strip() for k in ("phone", "email") if form.get(k, "").strip()}
    if form.get("method") == "representative":
        verification = {
            "method": "representative",
            "relation": form.get("relation", ""),
            "document_kind": form.get("document_kind", ""),
            "representative_id_check": form.get("id_check", ""),
        }
        if form.get("document_ref", "").strip():
            verification["document_ref"] = form["document_ref"].strip()
    else:
        verification = {"method": "agent", "check": form.get("check", "")}
    answer: dict[str, Any] = {
        "request": body,
        "identifiers": identifiers,
        "intake_channel": form.get("channel", ""),
        "verification": verification,
    }
    if form.get("notify_to", "").strip():
        answer["notify"] = {
            "channel": form.get("notify_channel", "sms"),
            "destination": form["notify_to"].strip(),
        }
    return answer


# Where each part of the body is typed in the form (the template's field ids).
_FIELDS = {
    "identifiers": "phone",
    "intake_channel": "channel-phone",
    "notify": "notify-to",
    "check": "check",
    "relation": "relation",
    "document_kind": "document-kind",
    "representative_id_check": "id-check",
    "document_ref": "document-ref",
    "corrections": "new-value",
    "purposes": "purposes",
}


def _field_of(loc: tuple[Any, ...]) -> str:
    """The form field a schema error is about (the most specific part of its location)."""
    for part in reversed(loc):
        if part in ("phone", "email") and "identifiers" in loc:
            return str(part)
        if part in _FIELDS:
            return _FIELDS[part]
    return "type-access"


def _intake_context(lang: str) -> dict[str, Any]:
    return {
        "types": TYPES,
        "type_labels": TYPE_LABELS,
        "items": [
            (code, item.ko if lang == "ko" else item.en)
            for code, item in ITEMS.items()
            if item.correctable
        ],
        "purposes": [
            (code, labels.ko if lang == "ko" else labels.en) for code, labels in PURPOSES.items()
        ],
    }


@router.get("/intake")
async def intake_page(request: Request, pages: PagesDep, principal: ConsolePrincipal) -> Response:
    return console_page(
        pages,
        request,
        "console/intake.html",
        principal,
        {**_intake_context(pages.locale(request)), "form": {}, "purposes_checked": []},
    )


@router.post("/intake")
async def intake_submit(
    request: Request,
    pages: PagesDep,
    principal: ConsolePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
    t: TranslatorDep,
) -> Response:
    form = await request.form()
    errors: dict[str, str] = {}
    try:
        body = StaffRequestCreate.model_validate(_intake_body(form))  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            field = _field_of(error["loc"])
            errors.setdefault(field, t(f"console.intake.errors.{field}"))
    else:
        # Checked before anything is written, so the form can come back with its errors.
        for kind, raw in (("phone", body.identifiers.phone), ("email", body.identifiers.email)):
            try:
                if raw:
                    normalise(kind, raw)  # type: ignore[arg-type]
            except InvalidInput:
                errors[kind] = t(f"console.intake.errors.{kind}")
    if errors:
        return console_page(
            pages,
            request,
            "console/intake.html",
            principal,
            {
                **_intake_context(pages.locale(request)),
                "form": {k: v for k, v in form.items() if isinstance(v, str)},
                "purposes_checked": form.getlist("purposes"),
                "errors": errors,
            },
            status=422,
        )
    submitted = await intake.submit_staff_request(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        body=body.request,
        identifiers=body.identifiers.model_dump(exclude_none=True),
        notify_via=body.notify.model_dump(exclude_none=True) if body.notify else None,
        intake_channel=body.intake_channel,
        verification=body.verification.model_dump(exclude_none=True),
        actor=actor_of(principal, client_ip),
    )
    return redirect_after(f"/console/requests/{submitted.answer['id']}?done=intake")
