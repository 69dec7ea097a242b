"""The privacy center's new-request forms: one per request type, each with a confirmation step.

GET shows the form; POST with ``step=review`` checks it (with the API's own ``RequestCreate``,
so a value the API refuses is refused here) and shows what will be asked; ``step=submit``
checks again and submits through the same intake service as ``POST /v1/requests``;
``step=edit`` goes back to the form with the values kept.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from app.audit.actors import Actor
from app.config import Settings
from app.datamap.connectors.base import SourceError
from app.db import driver_connection
from app.deps import ClientIpDep, ClockDep, CryptoDep, HttpDep, SessionDep, SettingsDep
from app.errors import NotFound
from app.requests import intake
from app.schemas.requests import RequestCreate
from app.subjects import records
from app.vocabulary import CATEGORIES, ITEMS, OPTIONAL_PURPOSES, PURPOSES, item_label
from app.web.deps import PagesDep, PrivacySubject, TranslatorDep
from app.web.i18n import Translator

router = APIRouter(prefix="/privacy/requests/new", include_in_schema=False)

KINDS = ("access", "correction", "deletion", "suspension", "consent_withdrawal")
CORRECTABLE = [code for code, item in ITEMS.items() if item.correctable]
ALL_RECORDS = "all"


def _purposes_for(kind: str) -> list[str]:
    if kind == "consent_withdrawal":
        return [code for code in PURPOSES if code in OPTIONAL_PURPOSES]
    return list(PURPOSES)


def _values(form: FormData | None, kind: str, item: str | None) -> dict[str, Any]:
    """What the form holds (or the defaults): plain strings and lists, never trusted."""

    def get(name: str) -> str:
        value = form.get(name) if form else None
        return value if isinstance(value, str) else ""

    def many(name: str) -> list[str]:
        return [v for v in form.getlist(name) if isinstance(v, str)] if form else []

    return {
        "item": str(get("item")) or (item or ""),
        "new_value": str(get("new_value")).strip(),
        "record_ref": str(get("record_ref")) or ALL_RECORDS,
        "scope": str(get("scope")) or "all",
        "categories": many("categories"),
        "purposes": many("purposes"),
    }


def _payload(kind: str, values: dict[str, Any], lang: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": kind, "locale": lang}
    if kind == "correction":
        entry: dict[str, Any] = {"item": values["item"], "new_value": values["new_value"]}
        if values["record_ref"] != ALL_RECORDS:
            entry["record_ref"] = values["record_ref"]
        payload["corrections"] = [entry]
    elif kind == "deletion" and values["scope"] == "categories":
        payload["categories"] = values["categories"]
    elif kind in ("suspension", "consent_withdrawal"):
        payload["purposes"] = values["purposes"]
    return payload


def _check(
    kind: str, values: dict[str, Any], t: Translator, lang: str
) -> tuple[RequestCreate | None, dict[str, str]]:
    """The request the API would accept, or the form's errors (field id → message)."""
    errors: dict[str, str] = {}
    if kind == "correction":
        if values["item"] not in CORRECTABLE:
            errors["item"] = t("privacy.correction.errors.item")
        elif not values["new_value"]:
            errors["new_value"] = t("privacy.correction.errors.empty")
    elif kind == "deletion":
        if values["scope"] not in ("all", "categories"):
            errors["scope"] = t("privacy.deletion.errors.scope")
        elif values["scope"] == "categories" and not values["categories"]:
            errors["categories"] = t("privacy.deletion.errors.categories")
    elif kind in ("suspension", "consent_withdrawal"):
        allowed = _purposes_for(kind)
        if not values["purposes"] or any(p not in allowed for p in values["purposes"]):
            errors["purposes"] = t("privacy.purposes.errors.none")
    if errors:
        return None, errors
    try:
        return RequestCreate.model_validate(_payload(kind, values, lang)), {}
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(part) for part in error.get("loc", ())]
            if "new_value" in loc:
                errors["new_value"] = t(f"privacy.correction.errors.value_{values['item']}")
            elif "record_ref" in loc:
                errors["record"] = t("privacy.correction.errors.record")
            elif "categories" in loc:
                errors["categories"] = t("privacy.deletion.errors.categories")
            elif "purposes" in loc:
                errors["purposes"] = t("privacy.purposes.errors.none")
            else:
                errors.setdefault("form", t("privacy.form.errors.generic"))
        return None, errors


async def _record_choices(
    request: Request,
    *,
    session: SessionDep,
    crypto: CryptoDep,
    http: HttpDep,
    principal: PrivacySubject,
    item: str,
) -> tuple[list[records.RecordChoice], bool]:
    """The subject's records holding ``item`` (and False when they could not be read now)."""
    datamap = request.app.state.datamap
    if datamap is None or item not in CORRECTABLE:
        return [], True
    subject = await records.subject_identifiers(
        session, crypto=crypto, subject_index=principal.subject
    )
    if subject is None:
        return [], True
    try:
        found = await records.records_holding(
            datamap,
            subject=subject,
            item=item,
            self_url=request.app.state.db.engine.url.render_as_string(hide_password=False),
            http=http,
            crypto=crypto,
        )
    except SourceError:
        return [], False
    return found, True


def _retention(settings: Settings, lang: str) -> list[dict[str, str]]:
    """What the law keeps after a deletion: the retention rules (policy section 2)."""
    rows = []
    for name, rule in settings.retention_rules.items():
        number, unit = int(rule.period[:-1]), rule.period[-1]
        if lang == "ko":
            period = f"{number}년" if unit == "y" else f"{number}개월"
        else:
            period = f"{number} year{'s' * (number != 1)}" if unit == "y" else f"{number} months"
        rows.append(
            {
                "name": name,
                "period": period,
                "basis": rule.legal_basis_ko if lang == "ko" else rule.legal_basis_en,
            }
        )
    return rows


async def _form_context(
    request: Request,
    kind: str,
    values: dict[str, Any],
    *,
    lang: str,
    settings: Settings,
    session: SessionDep,
    crypto: CryptoDep,
    http: HttpDep,
    principal: PrivacySubject,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "kind": kind,
        "v": values,
        "signed_in": True,
        "nav": "new",
        "retention": _retention(settings, lang) if kind == "deletion" else [],
        "items": [{"value": c, "label": item_label(c, lang)} for c in CORRECTABLE],
        "categories": [{"value": c, "label": label.get(lang)} for c, label in CATEGORIES.items()],
        "purposes": [{"value": c, "label": PURPOSES[c].get(lang)} for c in _purposes_for(kind)],
        "choices": [],
        "records_readable": True,
    }
    if kind == "correction" and values["item"] in CORRECTABLE:
        context["item_label"] = item_label(values["item"], lang)
        context["choices"], context["records_readable"] = await _record_choices(
            request,
            session=session,
            crypto=crypto,
            http=http,
            principal=principal,
            item=values["item"],
        )
    return context


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise NotFound("No such request type.")
    return kind


@router.get("")
async def choose_type(request: Request, pages: PagesDep, principal: PrivacySubject) -> HTMLResponse:
    return pages.render(
        request, "privacy/choose.html", {"kinds": KINDS, "signed_in": True, "nav": "new"}
    )


@router.get("/{kind}")
async def request_form(
    kind: str,
    request: Request,
    pages: PagesDep,
    principal: PrivacySubject,
    session: SessionDep,
    crypto: CryptoDep,
    http: HttpDep,
    settings: SettingsDep,
) -> HTMLResponse:
    kind = _kind(kind)
    item = request.query_params.get("item")
    values = _values(None, kind, item if item in CORRECTABLE else None)
    lang = pages.locale(request)
    context = await _form_context(
        request,
        kind,
        values,
        lang=lang,
        settings=settings,
        session=session,
        crypto=crypto,
        http=http,
        principal=principal,
    )
    return pages.render(request, f"privacy/form_{_template(kind)}.html", {**context, "errors": {}})


def _template(kind: str) -> str:
    return "purposes" if kind in ("suspension", "consent_withdrawal") else kind


@router.post("/{kind}")
async def review_or_submit(
    kind: str,
    request: Request,
    pages: PagesDep,
    t: TranslatorDep,
    principal: PrivacySubject,
    session: SessionDep,
    crypto: CryptoDep,
    http: HttpDep,
    settings: SettingsDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
) -> Response:
    kind = _kind(kind)
    form = await request.form()
    lang = pages.locale(request)
    values = _values(form, kind, None)
    step = form.get("step")
    body, errors = _check(kind, values, t, lang) if step != "edit" else (None, {})
    if body is None:
        shown = await _form_context(
            request,
            kind,
            values,
            lang=lang,
            settings=settings,
            session=session,
            crypto=crypto,
            http=http,
            principal=principal,
        )
        return pages.render(
            request,
            f"privacy/form_{_template(kind)}.html",
            {**shown, "errors": errors},
            status=422 if errors else 200,
        )
    context: dict[str, Any] | None = None
    if step != "submit" or (kind == "correction" and values["record_ref"] != ALL_RECORDS):
        context = await _form_context(
            request,
            kind,
            values,
            lang=lang,
            settings=settings,
            session=session,
            crypto=crypto,
            http=http,
            principal=principal,
        )
    record = None
    if context is not None and kind == "correction" and values["record_ref"] != ALL_RECORDS:
        record = next((c for c in context["choices"] if c.ref == values["record_ref"]), None)
        if record is None and context["records_readable"]:
            # The record named is not one of the subject's (PIPA Art. 36(1)): refused at intake,
            # before anything is stored. (Sources that cannot be read now: fulfilment checks.)
            return pages.render(
                request,
                "privacy/form_correction.html",
                {**context, "errors": {"record": t("privacy.correction.errors.record")}},
                status=422,
            )
    if step != "submit" and context is not None:
        return pages.render(
            request,
            "privacy/review.html",
            {
                **context,
                "body": body.model_dump(mode="json", exclude_none=True),
                "record": record,
            },
        )
    submitted = await intake.submit_subject_request(
        await driver_connection(session),
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        subject_index=principal.subject,
        body=body,
        actor=Actor.subject(principal.subject, client_ip),
        intake_channel="web",
    )
    return RedirectResponse(
        f"/privacy/requests/{submitted.answer['id']}?done=submitted", status_code=303
    )
