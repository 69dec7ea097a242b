"""Helpers for webhook tests: register processors through the API, queue notices, verify."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import select
from standardwebhooks import Webhook

from app.db import Database
from app.models import OutboxMessage, WebhookAttempt
from app.outbox.worker import Worker
from app.webhooks import notices
from tests.support.servers import Received

Headers = Callable[..., dict[str, str]]


async def register(
    client: httpx.AsyncClient, staff_headers: Headers, *, code: str, url: str, **extra: Any
) -> dict[str, Any]:
    body = {"code": code, "name": code.upper(), "nation": "Taiwan", "webhook_url": url, **extra}
    response = await client.post(
        "/v1/processors", json=body, headers=staff_headers("privacy_officer")
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def notify(
    db: Database,
    worker: Worker,
    *,
    code: str,
    event_type: str = "personal_data.corrected",
    data: dict[str, Any] | None = None,
    request_ref: uuid.UUID | None = None,
) -> uuid.UUID | None:
    async with db.transaction() as session:
        return await notices.queue_processor_notice(
            session,
            crypto=worker.ctx.crypto,
            now=worker.ctx.clock.now(),
            processor_code=code,
            event_type=event_type,
            data=data if data is not None else {"tracking_numbers": ["QX1"]},
            request_ref=request_ref,
        )


def verified(secret: str, item: Received) -> Any:
    """What a partner does: one call to the standardwebhooks package."""
    return Webhook(secret).verify(item.body, item.headers)


async def message(db: Database, message_id: uuid.UUID) -> OutboxMessage:
    async with db.sessionmaker() as session:
        return (
            await session.exec(select(OutboxMessage).where(OutboxMessage.id == message_id))
        ).one()


async def attempts(db: Database, message_id: uuid.UUID) -> list[WebhookAttempt]:
    async with db.sessionmaker() as session:
        return list(
            (
                await session.exec(
                    select(WebhookAttempt)
                    .where(WebhookAttempt.message_id == message_id)
                    .order_by(sa.column("id"))
                )
            ).all()
        )
