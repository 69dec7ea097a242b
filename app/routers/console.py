"""The support console's pages: the queue, processors, statistics and the export (a request's
page and its actions: ``console_requests``; intake: ``console_intake``).

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
from app.requests import deadlines, exports, queue, sla, statistics
from app.routers.console_auth import ConsolePrincipal, signed_in_context
from app.schemas.types import Day
from app.security import Principal
from app.vocabulary import TYPE_LABELS
from app.web.deps import PagesDep, TranslatorDep
from app.webhooks import deliveries, health

router = APIRouter(prefix="/console", include_in_schema=False)

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


# The queue's views: a filter of the queue, or (postponed, waiting on a processor) the SLA
# clock's own list of that bucket.
VIEWS = ("mine", "overdue", "today", "soon", "postponed", "awaiting")
BUCKET_VIEWS = {"postponed": "postponed", "awaiting": "awaiting_acknowledgement"}


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
    filters: queue.RequestFilters,
    cursor: str | None,
    view: str | None = None,
    searched: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    actor = actor_of(principal, client_ip)
    tz = settings.display_timezone
    overview = await sla.sla_overview(
        session, settings=settings, now=clock.now(), within_days=2, assignee=None, actor=actor
    )
    if view in BUCKET_VIEWS:
        page: dict[str, Any] = {"items": overview[BUCKET_VIEWS[view]], "next_cursor": None}
    else:
        listed = await queue.list_staff_requests(
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
            "items": [queue.queue_row(row, now=clock.now(), tz=tz) for row in listed.requests],
            "next_cursor": listed.next_cursor,
        }
    return console_page(
        pages,
        request,
        "console/queue.html",
        principal,
        {
            "page": page,
            "sla": overview["counts"],
            "view": view,
            "status_filter": filters.statuses[0] if filters.statuses else None,
            "searched": searched,
            "errors": errors or {},
            "statuses": STATUSES,
            "types": TYPES,
            "type_labels": TYPE_LABELS,
        },
        status=422 if errors else 200,
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
    view = view if view in VIEWS else None
    filters = queue.RequestFilters(
        statuses=[status] if status in STATUSES else None,
        types=[type] if type in TYPES else None,
        overdue=True if view == "overdue" else None,
        assignee=principal.subject if view == "mine" else None,
        due_within_days={"today": 0, "soon": 2}.get(view or ""),
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
        view=view,
    )


@router.get("/search")
async def search_by_get(principal: ConsolePrincipal) -> Response:
    """The search's address opened as a page (the language switch of a result): the queue."""
    return redirect_after("/console/")


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
    t: TranslatorDep,
    kind: Annotated[str, Form(max_length=16)] = "phone",
    value: Annotated[str, Form(max_length=254)] = "",
) -> Response:
    # A POST, so the caller's number never sits in a URL (history, proxies, referrers).
    kind = kind if kind in ("phone", "email", "reference") else "phone"
    search = queue.Search(**{kind: value.strip()})
    try:
        shown = queue.search_label(search)
    except InvalidInput:
        # Shown again with the error on the field; what was typed is not echoed.
        return await _queue(
            request,
            pages=pages,
            principal=principal,
            session=session,
            settings=settings,
            clock=clock,
            crypto=crypto,
            client_ip=client_ip,
            filters=queue.RequestFilters(),
            cursor=None,
            searched={"kind": kind},
            errors={"search-value": t(f"console.search.invalid_{kind}")},
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
        filters=queue.RequestFilters(search=search),
        cursor=None,
        searched={"kind": kind, "shown": shown},
    )


def redirect_after(url: str) -> Response:
    """Post/redirect/get: the session dependency has committed before this answer goes, so the
    browser's next GET sees what the POST wrote."""
    return RedirectResponse(url, status_code=303)


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


def _months(settings: SettingsDep, clock: ClockDep) -> dict[str, tuple[date, date]]:
    """This month so far and the whole of last month, in the display zone."""
    today = deadlines.local_date(clock.now(), settings.display_timezone)
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    return {
        "this_month": (first, today),
        "last_month": (last_month_end.replace(day=1), last_month_end),
    }


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
    months = _months(settings, clock)
    first, last = months["this_month"]
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
        {"s": figures, "type_labels": TYPE_LABELS, "months": months},
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
