"""Notices to subjects: rendered in Korean by default, sent through a real gateway on loopback."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from app.clock import FrozenClock
from app.config import Settings
from app.db import Database
from app.models import OutboxMessage
from app.notifications import messages
from app.outbox.worker import Worker
from app.subjects import identifiers
from tests.support.servers import RecordingServer, Reply, closed_port


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "gateway_token": "gw-secret",
    }


async def queue(db: Database, worker: Worker, **kwargs: Any) -> Any:
    defaults: dict[str, Any] = {
        "channel": "sms",
        "destination": "+821055550001",
        "template": "verification_code",
        "variables": {"code": "482910", "minutes": 5},
    }
    async with db.transaction() as session:
        return await messages.queue_notice(
            session, crypto=worker.ctx.crypto, now=worker.ctx.clock.now(), **(defaults | kwargs)
        )


async def test_sms_reaches_the_gateway_in_korean(
    db: Database, worker: Worker, gateway: RecordingServer
) -> None:
    message_id = await queue(db, worker)
    assert await worker.drain() == 1
    [received] = gateway.requests("/sms")
    assert received.headers["authorization"] == "Bearer gw-secret"
    assert received.headers["idempotency-key"] == str(message_id)
    body = received.json()
    assert body["channel"] == "sms" and body["to"] == "+821055550001"
    assert body["template"] == "verification_code"
    assert body["variables"] == {"code": "482910", "minutes": 5}
    assert "인증번호는 482910" in body["body"]


async def test_english_email_has_a_subject_line(
    db: Database, worker: Worker, gateway: RecordingServer
) -> None:
    await queue(db, worker, channel="email", destination="someone@example.com", locale="en")
    await worker.drain()
    [received] = gateway.requests("/email")
    body = received.json()
    assert body["subject"].startswith("[QXPRESS] Your verification code")
    assert "482910" in body["body"]  # never an empty e-mail
    assert body["to"] == "someone@example.com"


async def test_gateway_down_then_up_delivers_after_retry(
    db: Database, worker: Worker, gateway: RecordingServer, clock: FrozenClock
) -> None:
    gateway.reply_next(Reply(503), Reply(500))
    message_id = await queue(db, worker)
    await worker.run_once()
    clock.advance(timedelta(minutes=10))
    await worker.run_once()
    clock.advance(timedelta(minutes=10))
    await worker.run_once()
    assert len(gateway.requests("/sms")) == 3
    async with db.sessionmaker() as session:
        row = await session.get(OutboxMessage, message_id)
    assert row is not None and row.status == "delivered" and row.attempts == 3


async def test_unreachable_gateway_is_retried_not_lost(
    db: Database, worker: Worker, settings: Settings
) -> None:
    worker.ctx.settings = settings.model_copy(
        update={"sms_gateway_url": f"http://127.0.0.1:{closed_port()}/sms"}
    )
    message_id = await queue(db, worker)
    await worker.run_once()
    async with db.sessionmaker() as session:
        row = await session.get(OutboxMessage, message_id)
    assert row is not None and row.status == "pending"
    assert row.last_error == "gateway unreachable: ConnectError"


def test_phone_numbers_as_people_type_them() -> None:
    for typed in ("010-1234-5678", "01012345678", "+82 10 1234 5678", "010 1234 5678"):
        assert identifiers.normalise_phone(typed) == "+821012345678"
    assert identifiers.mask("phone", "+821012345678") == "010-****-5678"
    assert identifiers.normalise_email(" Demo.Subject@Example.COM ") == "demo.subject@example.com"


async def test_identifiers_are_stored_encrypted(db: Database, worker: Worker) -> None:
    async with db.transaction() as session:
        row = await identifiers.remember_identifier(
            session,
            crypto=worker.ctx.crypto,
            kind="phone",
            value="+821012345678",
            now=worker.ctx.clock.now(),
        )
        again = await identifiers.remember_identifier(
            session,
            crypto=worker.ctx.crypto,
            kind="phone",
            value="+821012345678",
            now=worker.ctx.clock.now(),
        )
    assert row.id == again.id
    async with db.sessionmaker() as session:
        raw = (
            await session.execute(sa.text("SELECT value_encrypted FROM subject_identifier"))
        ).scalar_one()
    assert b"821012345678" not in raw
    assert identifiers.reveal(worker.ctx.crypto, row) == "+821012345678"
