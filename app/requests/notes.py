"""Internal notes on a request: staff only, encrypted at rest, never in the subject's view."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.crypto import Crypto
from app.models import DsrRequestNote
from app.requests.lifecycle import load_request

# The longest note, in characters (the API documents it; the console's form says so).
NOTE_MAX = 4000


def _context(note_id: uuid.UUID, request_id: uuid.UUID) -> str:
    return f"dsr_request_note:{request_id}:{note_id}"


def note_view(crypto: Crypto, row: DsrRequestNote) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "at": row.at.isoformat(),
        "author": row.author,
        "role": row.role,
        "text": crypto.decrypt_str(row.text_encrypted, context=_context(row.id, row.request_id)),
    }


async def add_note(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    text: str,
    actor: Actor,
) -> dict[str, Any]:
    """Write a note on the request (audited: who, when, how long, never what)."""
    await load_request(session, request_id=request_id)
    note_id = uuid.uuid4()
    row = DsrRequestNote(
        id=note_id,
        request_id=request_id,
        at=now,
        author=actor.id,
        role=actor.role,
        text_encrypted=crypto.encrypt(text, context=_context(note_id, request_id)),
    )
    session.add(row)
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="request.note_added",
        target_type="request",
        target_id=str(request_id),
        client_ip=actor.client_ip,
        details={"note_id": str(note_id), "length": len(text)},
    )
    return note_view(crypto, row)


async def notes_of(
    session: AsyncSession, *, crypto: Crypto, request_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The request's notes, oldest first (the caller audits the read)."""
    rows = (
        await session.exec(
            select(DsrRequestNote)
            .where(col(DsrRequestNote.request_id) == request_id)
            .order_by(col(DsrRequestNote.at), col(DsrRequestNote.id))
        )
    ).all()
    return [note_view(crypto, row) for row in rows]


async def list_notes(
    session: AsyncSession, *, crypto: Crypto, now: datetime, request_id: uuid.UUID, actor: Actor
) -> list[dict[str, Any]]:
    """The request's notes for a staff member; the read is audited."""
    await load_request(session, request_id=request_id)
    items = await notes_of(session, crypto=crypto, request_id=request_id)
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="request.notes_viewed",
        target_type="request",
        target_id=str(request_id),
        client_ip=actor.client_ip,
        details={"count": len(items)},
    )
    return items
