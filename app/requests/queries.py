"""Reading requests: the subject's own, the staff queue (keyset pages), a request's details.

Every staff read of a request, the queue, or the audit trail is itself audited.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.cursors import cursor_instant, decode_cursor, encode_cursor
from app.errors import InvalidInput, NotFound
from app.models import DsrObjection, DsrRequest, DsrRequestEvent, SubjectIdentifier
from app.models.requests import OPEN_STATUSES, STATUSES
from app.requests import deadlines, notes, views
from app.requests.lifecycle import SUBJECT_INDEXES, unseal
from app.requests.notices import objection_until, reference
from app.requests.objections import open_text
from app.subjects import identifiers as subjects
from app.webhooks import acknowledgements

_REFERENCE = re.compile(r"^[0-9A-F]{8}$")


@dataclass(frozen=True)
class Search:
    """Who a caller is: an identifier as typed (never stored, logged or audited in clear) or the
    short reference read out on the phone."""

    phone: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)
    reference: str | None = None

    def kinds(self) -> list[str]:
        return [name for name in ("phone", "email", "reference") if getattr(self, name)]


@dataclass(frozen=True)
class RequestFilters:
    statuses: list[str] | None = None
    types: list[str] | None = None
    overdue: bool | None = None
    due_before: datetime | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    fulfilment: str | None = None  # queued | failed | done
    search: Search | None = None
    assignee: str | None = None  # a staff user id, or "none" for unowned requests
    due_within_days: int | None = None  # open, not overdue, due by the end of today + N days
    descending: bool = False  # latest due first

    def as_details(self) -> dict[str, Any]:
        details = {
            key: (value.isoformat() if isinstance(value, datetime) else value)
            for key, value in self.__dict__.items()
            if value is not None and key not in ("search", "descending")
        }
        if self.search is not None:
            # Only which kind was searched: the identifier itself never reaches the trail.
            details["search"] = self.search.kinds()
        if self.descending:
            details["descending"] = True
        return details


def search_label(search: Search) -> str:
    """What was searched for as it may be shown back: the identifier masked, the reference as
    written on the subject's notices; InvalidInput for something that cannot match anything."""
    if search.reference:
        low, _ = reference_range(search.reference)
        return low.hex[:8].upper()
    if search.phone:
        return subjects.mask("phone", subjects.normalise("phone", search.phone))
    if search.email:
        return subjects.mask("email", subjects.normalise("email", search.email))
    raise InvalidInput("Type what to search for.")


def reference_range(reference: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The ids whose short reference is ``reference`` (a primary-key range, not a scan)."""
    ref = reference.strip().replace("-", "").upper()
    if not _REFERENCE.match(ref):
        raise InvalidInput("A reference is 8 letters and digits (0-9, A-F).")
    low = uuid.UUID(ref.lower() + "0" * 24)
    high = uuid.UUID(ref.lower() + "f" * 24)
    return low, high


def _search_clauses(crypto: Crypto | None, search: Search) -> list[Any]:
    clauses: list[Any] = []
    for kind in ("phone", "email"):
        raw = getattr(search, kind)
        if not raw:
            continue
        if crypto is None:  # pragma: no cover - every staff caller passes crypto
            raise InvalidInput("Searching by identifier is not available here.")
        index = subjects.blind_index(crypto, kind, subjects.normalise(kind, raw))
        clauses.append(col(DsrRequest.subject_indexes).contains([index]))
    if search.reference:
        low, high = reference_range(search.reference)
        clauses.append(col(DsrRequest.id).between(low, high))
    return clauses


# Literal, not bound: the planner can then match the partial index of open requests
# (ix_dsr_request_open_due) in every plan, generic ones included.
_OPEN = sa.text(f"dsr_request.status IN ({', '.join(repr(s) for s in OPEN_STATUSES)})")
# Above this many stored requests (planner statistics), closed statuses are counted from the
# statistics instead of row by row: an exact count would read millions of rows per page.
EXACT_COUNT_LIMIT = 100_000


def _overdue_clause(now: datetime) -> Any:
    return sa.and_(_OPEN, col(DsrRequest.due_at) < now)


def _filtered(
    query: Any,
    filters: RequestFilters,
    now: datetime,
    *,
    crypto: Crypto | None = None,
    tz: str = "Asia/Seoul",
) -> Any:
    if filters.statuses:
        query = query.where(col(DsrRequest.status).in_(filters.statuses))
    if filters.types:
        query = query.where(col(DsrRequest.type).in_(filters.types))
    if filters.overdue is True:
        query = query.where(_overdue_clause(now))
    elif filters.overdue is False:
        query = query.where(sa.not_(_overdue_clause(now)))
    if filters.due_before is not None:
        query = query.where(col(DsrRequest.due_at) < filters.due_before)
    if filters.received_from is not None:
        query = query.where(col(DsrRequest.received_at) >= filters.received_from)
    if filters.received_to is not None:
        query = query.where(col(DsrRequest.received_at) < filters.received_to)
    if filters.fulfilment is not None:
        query = query.where(col(DsrRequest.fulfilment_state) == filters.fulfilment)
    if filters.search is not None:
        query = query.where(*_search_clauses(crypto, filters.search))
    if filters.assignee == "none":
        query = query.where(col(DsrRequest.assignee).is_(None))
    elif filters.assignee is not None:
        query = query.where(col(DsrRequest.assignee) == filters.assignee)
    if filters.due_within_days is not None:
        last_day = deadlines.local_date(now, tz) + timedelta(days=filters.due_within_days)
        query = query.where(
            col(DsrRequest.status).in_(OPEN_STATUSES),
            col(DsrRequest.due_at) >= now,
            col(DsrRequest.due_at) <= deadlines.end_of_local_day(last_day, tz),
        )
    return query


_OPEN_LIST = ", ".join(repr(status) for status in OPEN_STATUSES)
# The queue's counts in one statement (one round trip per page). Open statuses and overdue:
# exact, in one pass over the open requests' entries of the (status, due_at, id) index; failed
# and open objections: exact, each from a small index. Closed statuses: exact while the table
# holds up to EXACT_COUNT_LIMIT requests (planner statistics), then the statistics' estimates;
# each branch's condition is a one-time filter, so the other branch reads nothing.
_COUNTS = sa.text(
    f"""
    WITH stored AS (SELECT reltuples AS n FROM pg_class WHERE oid = 'dsr_request'::regclass),
    open AS (
        SELECT status, count(*) AS n, count(*) FILTER (WHERE due_at < :now) AS overdue
        FROM dsr_request WHERE status IN ({_OPEN_LIST}) GROUP BY status
    )
    SELECT
        (SELECT n FROM stored) > :exact_limit AS estimated,
        (SELECT coalesce(sum(overdue), 0) FROM open)::bigint AS overdue,
        (SELECT count(*) FROM dsr_request WHERE fulfilment_state = 'failed') AS failed,
        (SELECT count(*) FROM dsr_objection WHERE status = 'open') AS open_objections,
        ARRAY(
            SELECT status || '=' || n FROM open
            UNION ALL
            SELECT status || '=' || count(*) FROM dsr_request
            WHERE (SELECT n FROM stored) <= :exact_limit AND status NOT IN ({_OPEN_LIST})
            GROUP BY status
            UNION ALL
            SELECT v.status || '=' || round(v.freq * c.reltuples)::bigint
            FROM pg_class AS c, pg_stats AS s,
                unnest(s.most_common_vals::text::text[], s.most_common_freqs)
                AS v(status, freq)
            WHERE (SELECT n FROM stored) > :exact_limit
                AND c.oid = 'dsr_request'::regclass AND s.schemaname = current_schema()
                AND s.tablename = 'dsr_request' AND s.attname = 'status'
                AND v.status NOT IN ({_OPEN_LIST})
        ) AS by_status
    """
)


async def _counts(session: AsyncSession, *, now: datetime) -> dict[str, Any]:
    """The counts over all requests shown with every queue page (see ``_COUNTS``)."""
    row = (await session.execute(_COUNTS, {"now": now, "exact_limit": EXACT_COUNT_LIMIT})).one()
    by_status = dict.fromkeys(STATUSES, 0)
    for entry in row.by_status:
        status, count = entry.rsplit("=", 1)
        if status in by_status:
            by_status[status] = int(count)
    return {
        "by_status": by_status,
        "estimated": [s for s in STATUSES if s not in OPEN_STATUSES] if row.estimated else [],
        "overdue": row.overdue,
        "fulfilment_failed": row.failed,
        "open_objections": row.open_objections,
    }


@dataclass(frozen=True)
class QueuePageView:
    """One page of the staff queue: the requests, the keyset cursor, counts over all requests."""

    requests: list[Any]  # rows of dsr_request (the same attribute names as DsrRequest)
    next_cursor: str | None
    counts: dict[str, Any]


# What ``queue_row`` reads of a request (``list_staff_requests`` selects just these).
QUEUE_COLUMNS = (
    *("id", "type", "status", "received_at", "due_at", "intake_channel", "verification_method"),
    *("scope", "extensions", "proposal", "decision", "fulfilment_state", "assignee"),
    "assigned_at",
)


def queue_row(request: Any, *, now: datetime, tz: str) -> dict[str, Any]:
    """A queue line from a ``DsrRequest`` or a row of its table (the same attribute names)."""
    return {
        **views.summary(request, now=now, tz=tz),
        "reference": reference(request.id),
        "intake_channel": request.intake_channel,
        "verification_method": request.verification_method,
        "scope": request.scope,
        "extensions": request.extensions,
        "proposal_pending": bool(request.proposal),
        "decision_result": request.decision,
        "fulfilment_state": request.fulfilment_state,
        "assignee": request.assignee,
        "assigned_at": request.assigned_at.isoformat() if request.assigned_at else None,
    }


async def list_staff_requests(
    session: AsyncSession,
    *,
    now: datetime,
    filters: RequestFilters,
    cursor: str | None,
    limit: int,
    actor: Actor,
    crypto: Crypto | None = None,
    tz: str = "Asia/Seoul",
) -> QueuePageView:
    """One page of the queue, earliest due first (or latest: ``filters.descending``); the
    cursor is the last (due_at, id) seen. ``crypto`` for an identifier search, ``tz`` (the
    display zone) for ``due_within_days``."""
    # Planned for these values every time: a prepared statement's generic plan (from its sixth
    # run on) cannot see that a phone number or an assignee matches a handful of rows, walks
    # the (due_at, id) index and filters millions of rows (seconds at ten million).
    await session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
    # Rows of the table, not ORM objects: building 50 of those cost more than the query; and
    # only the columns a queue line shows (``queue_row``), not bodies and histories.
    query = _filtered(
        sa.select(*(DsrRequest.__table__.c[name] for name in QUEUE_COLUMNS)),  # type: ignore[attr-defined]
        filters,
        now,
        crypto=crypto,
        tz=tz,
    )
    key = sa.tuple_(col(DsrRequest.due_at), col(DsrRequest.id))
    if cursor is not None:
        due_text, id_text = decode_cursor(cursor, 2)
        try:
            after = (cursor_instant(due_text), uuid.UUID(id_text))
        except ValueError:
            raise InvalidInput("The cursor is not valid.") from None
        query = query.where(
            key < sa.tuple_(*after) if filters.descending else key > sa.tuple_(*after)
        )
    due, row_id = col(DsrRequest.due_at), col(DsrRequest.id)
    if filters.search is not None:
        # A caller's few requests: found through the GIN (or primary-key) index first, then
        # ordered. As one query even a custom plan walked the (due_at, id) index, expecting
        # thousands of matches to stop early at, and read every row (430 ms at one million).
        hits = query.cte("hits").prefix_with("MATERIALIZED")
        query = sa.select(hits)
        due, row_id = hits.c.due_at, hits.c.id
    if filters.descending:
        query = query.order_by(due.desc(), row_id.desc())
    else:
        query = query.order_by(due, row_id)
    query = query.limit(limit + 1)
    rows = list((await session.execute(query)).all())
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1].due_at.isoformat(), page[-1].id) if more else None
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="requests.listed",
        target_type="request",
        client_ip=actor.client_ip,
        details={"filters": filters.as_details(), "ids": [str(row.id) for row in page]},
    )
    return QueuePageView(page, next_cursor, await _counts(session, now=now))


async def _objection_views(
    session: AsyncSession, *, crypto: Crypto, request_id: uuid.UUID, tz: str
) -> list[dict[str, Any]]:
    rows = (
        await session.exec(
            select(DsrObjection)
            .where(col(DsrObjection.request_id) == request_id)
            .order_by(col(DsrObjection.submitted_at))
        )
    ).all()
    return [
        views.objection(
            row,
            reason=open_text(crypto, row.id, "reason", row.reason_encrypted) or "",
            explanation=open_text(crypto, row.id, "outcome", row.outcome_note_encrypted),
            tz=tz,
        )
        for row in rows
    ]


def _answer(
    request: DsrRequest, *, crypto: Crypto, settings: Settings, now: datetime
) -> dict[str, Any]:
    """What both the subject and staff see of a request's answer."""
    until = objection_until(request, settings)
    return {
        **views.summary(request, now=now, tz=settings.display_timezone),
        "locale": request.locale,
        "body": unseal(crypto, request.id, "body", request.body_encrypted),
        "decision": views.decision(
            request,
            explanation=unseal(crypto, request.id, "decision", request.decision_note_encrypted),
            locale=request.locale,
        ),
        "fulfilment_refusals": [
            views.refusal(entry, locale=request.locale)
            for entry in request.refusals
            if entry.get("stage") == "fulfilment"
        ],
        "completed_at": request.completed_at.isoformat() if request.completed_at else None,
        "withdrawn_at": request.withdrawn_at.isoformat() if request.withdrawn_at else None,
        "objection_until": until.isoformat()
        if until and request.status in ("refused", "partially_completed")
        else None,
    }


def _mine(subject_index: str, subject_indexes: Sequence[str]) -> Any:
    """The requests this subject sees (``lifecycle.subject_may_see``, in SQL)."""
    indexes = sa.literal(list(dict.fromkeys([subject_index, *subject_indexes])), SUBJECT_INDEXES)
    column = col(DsrRequest.subject_indexes)
    return sa.or_(
        sa.and_(col(DsrRequest.verification_method) != "otp", column.op("&&")(indexes)),
        column.op("<@")(indexes),
    )


async def list_subject_requests(
    session: AsyncSession,
    *,
    settings: Settings,
    now: datetime,
    subject_index: str,
    subject_indexes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The subject's own requests, newest first."""
    rows = (
        await session.exec(
            select(DsrRequest)
            .where(_mine(subject_index, subject_indexes))
            .order_by(col(DsrRequest.received_at).desc(), col(DsrRequest.id))
            .limit(200)
        )
    ).all()
    return [views.summary(row, now=now, tz=settings.display_timezone) for row in rows]


async def find_subject_request(
    session: AsyncSession,
    *,
    request_id: uuid.UUID,
    subject_index: str,
    subject_indexes: Sequence[str] = (),
) -> DsrRequest:
    """The request if it was made under one of this subject's identifiers, else NotFound."""
    request = (
        await session.exec(
            select(DsrRequest).where(
                col(DsrRequest.id) == request_id, _mine(subject_index, subject_indexes)
            )
        )
    ).first()
    if request is None:
        raise NotFound("No such request.")
    return request


async def get_subject_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    subject_index: str,
    subject_indexes: Sequence[str] = (),
) -> dict[str, Any]:
    """One of the subject's own requests; another subject's is NotFound, never Forbidden."""
    request = await find_subject_request(
        session, request_id=request_id, subject_index=subject_index, subject_indexes=subject_indexes
    )
    return {
        **_answer(request, crypto=crypto, settings=settings, now=now),
        "objections": await _objection_views(
            session, crypto=crypto, request_id=request.id, tz=settings.display_timezone
        ),
    }


async def view_staff_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    actor: Actor,
) -> dict[str, Any]:
    """Everything about a request, with its full history; the read is audited."""
    request = await session.get(DsrRequest, request_id)
    if request is None:
        raise NotFound("No such request.")
    identifiers = (
        await session.exec(
            select(SubjectIdentifier).where(col(SubjectIdentifier.id).in_(request.identifier_ids))
        )
    ).all()
    events = (
        await session.exec(
            select(DsrRequestEvent)
            .where(col(DsrRequestEvent.request_id) == request.id)
            .order_by(col(DsrRequestEvent.id))
        )
    ).all()
    proposal = None
    if request.proposal:
        proposal = {
            **request.proposal,
            "explanation": unseal(crypto, request.id, "proposal", request.proposal_note_encrypted),
        }
    view = {
        **_answer(request, crypto=crypto, settings=settings, now=now),
        **queue_row(request, now=now, tz=settings.display_timezone),
        "original_due_at": request.original_due_at.isoformat(),
        "verification": request.verification,
        "notice_channel": request.notice_channel,
        "identifiers": [
            {
                "kind": row.kind,
                "masked": subjects.mask(row.kind, subjects.reveal(crypto, row)),  # type: ignore[arg-type]
            }
            for row in identifiers
        ],
        "proposal": proposal,
        "fulfilment": {
            "state": request.fulfilment_state,
            "attempts": request.fulfilment_attempts,
            "error": request.fulfilment_error,
        },
        "result": unseal(crypto, request.id, "result", request.result_encrypted),
        "objections": await _objection_views(
            session, crypto=crypto, request_id=request.id, tz=settings.display_timezone
        ),
        "history": [
            views.event(row, note=unseal(crypto, request.id, "note", row.note_encrypted))
            for row in events
        ],
        "processor_notices": await acknowledgements.processor_confirmations(
            session, crypto=crypto, request_ref=request.id
        ),
        "notes": await notes.notes_of(session, crypto=crypto, request_id=request.id),
    }
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="request.viewed",
        target_type="request",
        target_id=str(request.id),
        client_ip=actor.client_ip,
        details={"parts": ["body", "identifiers_masked", "history", "result", "notes"]},
    )
    return view


# What a subject sees of the history: status changes and the steps that concern them.
SUBJECT_HISTORY_ACTIONS = frozenset({"extended", "objection_submitted", "objection_decided"})


async def subject_history(
    session: AsyncSession, *, request_id: uuid.UUID, subject_index: str
) -> list[dict[str, Any]]:
    """The request's history as its subject sees it: when, what, and the status it led to.

    Never staff notes or who acted; another subject's request is NotFound.
    """
    request = await find_subject_request(
        session, request_id=request_id, subject_index=subject_index
    )
    events = (
        await session.exec(
            select(DsrRequestEvent)
            .where(col(DsrRequestEvent.request_id) == request.id)
            .order_by(col(DsrRequestEvent.id))
        )
    ).all()
    return [
        {"at": row.at.isoformat(), "action": row.action, "to_status": row.to_status}
        for row in events
        if (row.to_status and row.to_status != row.from_status)
        or row.action in SUBJECT_HISTORY_ACTIONS
    ]
