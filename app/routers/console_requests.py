"""The console's request page and its actions (take, review, note, propose, decide, extend).

Each action is a form posting to ``/console/requests/{id}/{action}`` and answering with a
redirect to the request page. A form the agent can fix (an explanation left blank, no day
chosen) comes back as the request page with the error on its field and what was typed kept,
before any service runs; the services check the same again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from app.deps import ClientIpDep, ClockDep, CryptoDep, SessionDep, SettingsDep
from app.errors import Forbidden, InvalidInput
from app.requests import assignment, deadlines, decisions, notes, postponement, workbench
from app.routers.console import actor_of, console_page, redirect_after
from app.routers.console_auth import ConsolePrincipal
from app.security import Principal
from app.vocabulary import TYPE_LABELS
from app.web.deps import PagesDep
from app.web.i18n import Translator

router = APIRouter(prefix="/console", include_in_schema=False)

# Its length is checked by form_errors (a note may be longer than an explanation), so that a
# long text comes back to be shortened with the field's own message.
Text = Annotated[str, Form()]

# The field holding each form's explanation (the template's ids), for actions that need one.
EXPLAINED = {
    "note": "note-text",
    "propose": "propose-text",
    "refuse": "refuse-text",
    "extend": "extend-text",
}


@dataclass(frozen=True)
class Typed:
    """What the staff member sent with an action, to show again beside its errors."""

    action: str = ""
    text: str = ""
    ground: str = ""
    items: list[str] = field(default_factory=list)
    new_due: str = ""


def form_errors(typed: Typed, t: Translator) -> dict[str, str]:
    """Errors the staff member can fix, by field id (empty when the form may go on)."""
    errors: dict[str, str] = {}
    action = "partial" if typed.action == "approve" and typed.items else typed.action
    text_field = EXPLAINED.get(action) or ("partial-text" if action == "partial" else None)
    if text_field and not typed.text.strip():
        key = "note_required" if action == "note" else "explanation_required"
        errors[text_field] = t(f"console.errors.{key}")
    elif text_field:
        # The same limits as the API's (its schemas use these constants).
        longest = notes.NOTE_MAX if action == "note" else decisions.EXPLANATION_MAX
        if len(typed.text) > longest:
            errors[text_field] = t(
                "console.errors.text_too_long", longest=f"{longest:,}", typed=f"{len(typed.text):,}"
            )
    if action == "extend":
        try:
            date.fromisoformat(typed.new_due)
        except ValueError:
            errors = {"extend-date": t("console.errors.new_due_required"), **errors}
    return errors


async def _render(
    request: Request,
    *,
    request_id: uuid.UUID,
    pages: PagesDep,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: str,
    done: str | None = None,
    errors: dict[str, str] | None = None,
    typed: Typed | None = None,
) -> Response:
    view = await workbench.request_workbench(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        request_id=request_id,
        actor=actor_of(principal, client_ip),
        locale=pages.locale(request),
    )
    today = deadlines.local_date(clock.now(), settings.display_timezone)
    return console_page(
        pages,
        request,
        "console/request.html",
        principal,
        {
            "r": view,
            "done": done,
            "errors": errors or {},
            "typed": typed or Typed(),
            # Without a colleague's proposal an officer may refuse alone only if so configured.
            "single_officer": settings.single_officer_refusals,
            "type_labels": TYPE_LABELS,
            "extend_min": (today + timedelta(days=1)).isoformat(),
        },
        status=422 if errors else 200,
    )


@router.get("/requests/{request_id}")
async def request_page(
    request: Request,
    request_id: uuid.UUID,
    pages: PagesDep,
    principal: ConsolePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    return await _render(
        request,
        request_id=request_id,
        pages=pages,
        principal=principal,
        session=session,
        settings=settings,
        clock=clock,
        crypto=crypto,
        client_ip=client_ip,
        done=done,
    )


@router.get("/requests/{request_id}/{action}")
async def action_by_get(
    request_id: uuid.UUID, action: str, principal: ConsolePrincipal
) -> Response:
    """An action's address opened as a page (the language switch of a form shown again with
    its errors, a bookmark): the request page."""
    return redirect_after(f"/console/requests/{request_id}")


def _require(principal: Principal, role: str) -> None:
    if role not in principal.roles:
        raise Forbidden("Your role may not do this.")


@router.post("/requests/{request_id}/{action}")
async def request_action(
    request: Request,
    request_id: uuid.UUID,
    action: str,
    pages: PagesDep,
    principal: ConsolePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
    text: Text = "",
    ground: Annotated[str, Form(max_length=40)] = "",
    items: Annotated[list[str] | None, Form()] = None,
    new_due: Annotated[str, Form(max_length=10)] = "",
    assignee: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    if action in ("accept-proposal", "refuse", "extend"):
        _require(principal, "privacy_officer")
    typed = Typed(action=action, text=text, ground=ground, items=items or [], new_due=new_due)
    errors = form_errors(typed, Translator(pages.locale(request)))
    if errors:
        return await _render(
            request,
            request_id=request_id,
            pages=pages,
            principal=principal,
            session=session,
            settings=settings,
            clock=clock,
            crypto=crypto,
            client_ip=client_ip,
            errors=errors,
            typed=typed,
        )
    common: dict[str, Any] = {
        "crypto": crypto,
        "now": clock.now(),
        "request_id": request_id,
        "actor": actor_of(principal, client_ip),
    }
    refused = [{"item": item, "ground": ground} for item in items or []]
    explanation = text.strip()
    if action == "take":
        await assignment.take_request(session, **common)
    elif action == "unassign":
        await assignment.unassign_request(session, **common)
    elif action == "assign":
        await assignment.assign_request(session, assignee=assignee.strip(), **common)
    elif action == "review":
        await decisions.start_review(session, **common)
    elif action == "note":
        await notes.add_note(session, text=explanation, **common)
    elif action == "propose":
        # No part ticked: the whole request is proposed for refusal on the ground.
        await decisions.propose_refusal(
            session,
            ground=None if refused else ground or None,
            refused_items=refused or None,
            explanation=explanation,
            **common,
        )
    elif action == "approve":
        await decisions.approve_request(
            session,
            settings=settings,
            refused_items=refused or None,
            explanation=explanation or None,
            **common,
        )
    elif action == "accept-proposal":
        await workbench.decide_as_proposed(session, settings=settings, **common)
    elif action == "refuse":
        await decisions.refuse_request(
            session, settings=settings, ground=ground, explanation=explanation, **common
        )
    elif action == "extend":
        due = deadlines.end_of_local_day(date.fromisoformat(new_due), settings.display_timezone)
        await postponement.extend_request(
            session, settings=settings, reason=explanation, new_due_at=due, **common
        )
    elif action == "withdraw":
        await decisions.withdraw_request(session, settings=settings, **common)
    else:
        raise InvalidInput("No such action.")
    return redirect_after(f"/console/requests/{request_id}?done={action}")
