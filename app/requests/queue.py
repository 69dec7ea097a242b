"""The staff queue: filters, identifier search, keyset pages and the counts shown with them.

Every page read is itself audited (who looked, with which filters, at which requests).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.crypto import Crypto
from app.cursors import cursor_instant, decode_cursor, encode_cursor
from app.errors import InvalidInput
from app.models import DsrRequest
from app.models.requests import OPEN_STATUSES, STATUSES
from app.requests import deadlines, views
from app.requests.notices import reference
from app.subjects import identifiers as subjects

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
