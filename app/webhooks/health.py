"""Delivery health for the console: each processor's deliveries by status, and the dead letters
an operator may replay. Counts and codes only; no notice body is read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import Actor
from app.config import Settings
from app.crypto import Crypto
from app.webhooks import deliveries, processors


async def delivery_health(
    session: AsyncSession, *, crypto: Crypto, settings: Settings, now: datetime, actor: Actor
) -> dict[str, Any]:
    """Every processor with its counts, and the latest dead deliveries (the read is audited)."""
    rows = []
    for processor in await processors.list_processors(session):
        view = await processors.get_processor(
            session, settings=settings, now=now, code=processor.code
        )
        rows.append(
            {
                "code": processor.code,
                "name": processor.name,
                "state": processor.state,
                "failing_since": processor.failing_since,
                "counts": view.counts,
            }
        )
    dead, _ = await deliveries.list_deliveries(session, crypto=crypto, status="dead", limit=100)
    await trail.record(
        session,
        now=now,
        actor=actor.id,
        role=actor.role,
        action="webhooks.health_viewed",
        target_type="processor",
        client_ip=actor.client_ip,
        details={"processors": len(rows), "dead": len(dead)},
    )
    return {
        "processors": rows,
        "dead": [
            {
                "id": str(view.message.id),
                "processor": view.message.target,
                "event_type": view.message.topic,
                "attempts": view.message.attempts,
                "error": view.message.last_error,
                "created_at": view.message.created_at,
                "request_ref": view.message.request_ref,
            }
            for view in dead
        ],
    }
