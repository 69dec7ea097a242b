"""Readable views of requests: deadlines in Asia/Seoul, decisions with their legal grounds.

Plain dicts shaped like the API bodies in ``app/schemas``; decrypting is done by the caller.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from app.models import DsrObjection, DsrRequest, DsrRequestEvent
from app.models.requests import OPEN_STATUSES
from app.requests import deadlines
from app.vocabulary import GROUNDS, item_label


class RequestFacts(Protocol):
    """What lists and notices read of a request: a ``DsrRequest`` row, or the values intake
    has just written (building an ORM object costs more than the rest of a notice)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def locale(self) -> str: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def decision(self) -> str | None: ...
    @property
    def refusals(self) -> list[dict[str, Any]]: ...
    @property
    def objectable_since(self) -> datetime | None: ...


def is_overdue(request: RequestFacts, *, now: datetime) -> bool:
    return request.status in OPEN_STATUSES and now > request.due_at


def summary(request: RequestFacts, *, now: datetime, tz: str) -> dict[str, Any]:
    """What every list shows of a request, with deadlines also in the display zone."""
    return {
        "id": str(request.id),
        "type": request.type,
        "status": request.status,
        "received_at": request.received_at.isoformat(),
        "due_at": request.due_at.isoformat(),
        "received_at_local": deadlines.in_zone(request.received_at, tz).isoformat(),  # type: ignore[union-attr]
        "due_at_local": deadlines.in_zone(request.due_at, tz).isoformat(),  # type: ignore[union-attr]
        "days_left": deadlines.days_left(request.due_at, now=now, tz=tz),
        "overdue": is_overdue(request, now=now),
    }


def refusal(entry: dict[str, Any], *, locale: str) -> dict[str, Any]:
    ground = GROUNDS[entry["ground"]]
    item = entry.get("item")
    return {
        "item": item,
        "item_label": item_label(item, locale) if item else None,
        "ground": ground.code,
        "ground_label": ground.label(locale),
        "legal_source": ground.source(locale),
        "stage": entry.get("stage", "decision"),
    }


def decision(request: DsrRequest, *, explanation: str | None, locale: str) -> dict[str, Any] | None:
    if request.decision is None or request.decided_at is None:
        return None
    return {
        "result": request.decision,
        "decided_at": request.decided_at.isoformat(),
        "refusals": [
            refusal(entry, locale=locale)
            for entry in request.refusals
            if entry.get("stage", "decision") == "decision"
        ],
        "explanation": explanation,
    }


def objection(
    row: DsrObjection, *, reason: str, explanation: str | None, tz: str
) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "status": row.status,
        "submitted_at": row.submitted_at.isoformat(),
        "due_at": row.due_at.isoformat(),
        "due_at_local": deadlines.in_zone(row.due_at, tz).isoformat(),  # type: ignore[union-attr]
        "reason": reason,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "explanation": explanation,
    }


def event(row: DsrRequestEvent, *, note: str | None) -> dict[str, Any]:
    return {
        "at": row.at.isoformat(),
        "actor": row.actor,
        "role": row.role,
        "action": row.action,
        "from_status": row.from_status,
        "to_status": row.to_status,
        "details": row.details,
        "note": note,
    }
