"""The support console's pages: the queue, a request, intake, processors, statistics.

A page is another router over the same services as the API, with the console session instead
of a bearer token; officer-only pages and actions check the role here, as the API's
dependencies do, and the services check it again.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from app.audit.actors import Actor
from app.deps import (
    ClientIpDep,
    ClockDep,
    CryptoDep,
    DatabaseDep,
    SessionDep,
    SettingsDep,
)
from app.errors import Forbidden, InvalidInput
from app.models.requests import STATUSES, TYPES
from app.requests import (
    assignment,
    deadlines,
    decisions,
    exports,
    notes,
    queries,
    sla,
    statistics,
    workbench,
)
from app.routers.console_auth import ConsolePrincipal, signed_in_context
from app.schemas.types import Day
from app.security import Principal
from app.vocabulary import TYPE_LABELS
from app.web.deps import PagesDep
from app.webhooks import deliveries, health

router = APIRouter(prefix="/console", include_in_schema=False)

Text = Annotated[str, Form(max_length=2000)]
Optional = Annotated[str, Form(max_length=254)]
MANAGERS = frozenset({"privacy_officer", "admin"})


def actor_of(principal: Principal, client_ip: str) -> Actor:
    return Actor.of(principal, client_ip)


def _require(principal: Principal, roles: frozenset[str]) -> None:
    if not principal.roles & roles:
        raise Forbidden("Your role may not do this.")


def console_page(
    pages: PagesDep,
    request: Request,
    template: str,
    principal: Principal,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> Response:
    nav = request.url.path.removeprefix("/console").strip("/").split("/")[0] or "queue"
    return pages.render(
        request,
        template,
        {**signed_in_context(principal), "nav": nav, "errors": {}, **context},
        status=status,
    )


# ---------------------------------------------------------------------------------- the queue


async def _queue(
    request: Request,
    *,
    pages: PagesDep,
    principal: Principal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: str,
    filters: queries.RequestFilters,
    cursor: str | None,
    searched: bool,
    status_code: int = 200,
) -> Response:
    actor = actor_of(principal, client_ip)
    tz = settings.display_timezone
    listed = await queries.list_staff_requests(
        session,
        now=clock.now(),
        filters=filters,
        cursor=cursor,
        limit=50,
        actor=actor,
        crypto=crypto,
        tz=tz,
    )
    page = {
        "items": [queries.queue_row(row, now=clock.now(), tz=tz) for row in listed.requests],
        "next_cursor": listed.next_cursor,
    }
    overview = await sla.sla_overview(
        session, settings=settings, now=clock.now(), within_days=2, assignee=None, actor=actor
    )
    return console_page(
        pages,
        request,
        "console/queue.html",
        principal,
        {
            "page": page,
            "sla": overview["counts"],
            "filters": filters,
            "searched": searched,
            "statuses": STATUSES,
            "types": TYPES,
            "type_labels": TYPE_LABELS,
        },
        status=status_code,
    )


@router.get("/")
async def queue_page(
    request: Request,
    pages: PagesDep,
    principal: ConsolePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
    status: Annotated[str | None, Query(max_length=32)] = None,
    type: Annotated[str | None, Query(max_length=32)] = None,
    view: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> Response:
    filters = queries.RequestFilters(
        statuses=[status] if status in STATUSES else None,
        types=[type] if type in TYPES else None,
        overdue=True if view == "overdue" else None,
        assignee=principal.subject if view == "mine" else None,
        due_within_days=2 if view == "soon" else None,
    )
    return await _queue(
        request,
        pages=pages,
        principal=principal,
        session=session,
        settings=settings,
        clock=clock,
        crypto=crypto,
        client_ip=client_ip,
        filters=filters,
        cursor=cursor,
        searched=False,
    )


@router.post("/search")
async def search_page(
    request: Request,
    pages: PagesDep,
    principal: ConsolePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
    kind: Annotated[str, Form(max_length=16)] = "phone",
    value: Annotated[str, Form(max_length=254)] = "",
) -> Response:
    # A POST, so the caller's number never sits in a URL (history, proxies, referrers).
    if kind not in ("phone", "email", "reference") or not value.strip():
        raise InvalidInput("Choose what to search by and type it.")
    search = queries.Search(**{kind: value.strip()})
    return await _queue(
        request,
        pages=pages,
        principal=principal,
        session=session,
        settings=settings,
        clock=clock,
        crypto=crypto,
        client_ip=client_ip,
        filters=queries.RequestFilters(search=search),
        cursor=None,
        searched=True,
    )


# ---------------------------------------------------------------------------------- a request


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
    lang = pages.locale(request)
    view = await workbench.request_workbench(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        request_id=request_id,
        actor=actor_of(principal, client_ip),
        locale=lang,
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
            # Without a colleague's proposal an officer may refuse alone only if so configured.
            "single_officer": settings.single_officer_refusals,
            "type_labels": TYPE_LABELS,
            "extend_min": (today + timedelta(days=1)).isoformat(),
        },
    )


def redirect_after(url: str) -> Response:
    """Post/redirect/get: the session dependency has committed before this answer goes, so the
    browser's next GET sees what the POST wrote."""
    return RedirectResponse(url, status_code=303)


@router.post("/requests/{request_id}/{action}")
async def request_action(
    request_id: uuid.UUID,
    action: str,
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
    actor = actor_of(principal, client_ip)
    now = clock.now()
    common: dict[str, Any] = {
        "crypto": crypto,
        "now": now,
        "request_id": request_id,
        "actor": actor,
    }
    refused = [{"item": item, "ground": ground} for item in items or []]
    if action == "take":
        await assignment.take_request(session, **common)
    elif action == "unassign":
        await assignment.unassign_request(session, **common)
    elif action == "assign":
        await assignment.assign_request(session, assignee=assignee.strip(), **common)
    elif action == "review":
        await decisions.start_review(session, **common)
    elif action == "note":
        if not text.strip():
            raise InvalidInput("Write the note first.")
        await notes.add_note(session, text=text.strip(), **common)
    elif action == "propose":
        await decisions.propose_refusal(
            session,
            ground=None if refused else ground or None,
            refused_items=refused or None,
            explanation=text.strip(),
            **common,
        )
    elif action == "approve":
        await decisions.approve_request(
            session,
            settings=settings,
            refused_items=refused or None,
            explanation=text.strip() or None,
            **common,
        )
    elif action == "accept-proposal":
        _require(principal, frozenset({"privacy_officer"}))
        await workbench.decide_as_proposed(session, settings=settings, **common)
    elif action == "refuse":
        _require(principal, frozenset({"privacy_officer"}))
        await decisions.refuse_request(
            session, settings=settings, ground=ground, explanation=text.strip(), **common
        )
    elif action == "extend":
        _require(principal, frozenset({"privacy_officer"}))
        try:
            day = date.fromisoformat(new_due)
        except ValueError:
            raise InvalidInput("Choose the new due day.") from None
        due = deadlines.end_of_local_day(day, settings.display_timezone)
        await decisions.extend_request(
            session, settings=settings, reason=text.strip(), new_due_at=due, **common
        )
    elif action == "withdraw":
        await decisions.withdraw_request(session, **common)
    else:
        raise InvalidInput("No such action.")
    return redirect_after(f"/console/requests/{request_id}?done={action}")


# ------------------------------------------------------------------ processors and statistics


@router.get("/processors")
async def processors_page(
    request: Request,
    pages: PagesDep,
    principal: ConsolePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    _require(principal, MANAGERS)
    view = await health.delivery_health(
        session,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        actor=actor_of(principal, client_ip),
    )
    return console_page(
        pages, request, "console/processors.html", principal, {**view, "done": done}
    )


@router.post("/deliveries/{delivery_id}/replay")
async def replay(
    delivery_id: uuid.UUID,
    principal: ConsolePrincipal,
    session: SessionDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
) -> Response:
    _require(principal, MANAGERS)
    await deliveries.replay_delivery(
        session,
        crypto=crypto,
        now=clock.now(),
        actor=actor_of(principal, client_ip),
        delivery_id=delivery_id,
    )
    return redirect_after("/console/processors?done=replayed")


def _month(settings: SettingsDep, clock: ClockDep) -> tuple[date, date]:
    today = deadlines.local_date(clock.now(), settings.display_timezone)
    return today.replace(day=1), today


@router.get("/statistics")
async def statistics_page(
    request: Request,
    pages: PagesDep,
    principal: ConsolePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
    day_from: Annotated[Day | None, Query(alias="from")] = None,
    day_to: Annotated[Day | None, Query(alias="to")] = None,
) -> Response:
    _require(principal, MANAGERS)
    first, last = _month(settings, clock)
    figures = await statistics.request_statistics(
        session,
        settings=settings,
        now=clock.now(),
        day_from=day_from or first,
        day_to=day_to or last,
        actor=actor_of(principal, client_ip),
    )
    return console_page(
        pages,
        request,
        "console/statistics.html",
        principal,
        {"s": figures, "type_labels": TYPE_LABELS},
    )


@router.get("/export.csv")
async def export_csv(
    principal: ConsolePrincipal,
    session: SessionDep,
    database: DatabaseDep,
    settings: SettingsDep,
    clock: ClockDep,
    crypto: CryptoDep,
    client_ip: ClientIpDep,
    day_from: Annotated[Day, Query(alias="from")],
    day_to: Annotated[Day, Query(alias="to")],
    personal: bool = False,
) -> Response:
    _require(principal, MANAGERS)
    stream = await exports.export_requests(
        session,
        database=database,
        crypto=crypto,
        settings=settings,
        now=clock.now(),
        day_from=day_from,
        day_to=day_to,
        personal=personal,
        actor=actor_of(principal, client_ip),
    )
    name = f"dsr-requests-{day_from.isoformat()}-{day_to.isoformat()}.csv"
    return StreamingResponse(
        stream,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
