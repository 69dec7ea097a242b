"""The transactional outbox: everything that leaves the service is a row here first."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk


class OutboxMessage(SQLModel, table=True):
    """One message to send (SMS/e-mail notice, processor webhook) or one job for the worker.

    Written in the same transaction as the change that causes it; claimed by workers with
    ``FOR UPDATE SKIP LOCKED``; its id is stable across retries (the receiver's idempotency key).
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        # The claim reads pending rows only: delivered history does not slow it (0012).
        sa.Index(
            "ix_outbox_message_pending",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
        ),
        sa.Index(
            "ix_outbox_message_unfinished",
            "status",
            "kind",
            postgresql_where=sa.text("status NOT IN ('delivered', 'cancelled')"),
        ),
        sa.Index(
            "ix_outbox_message_finished_payload",
            "updated_at",
            postgresql_where=sa.text(
                "payload IS NOT NULL AND status IN ('delivered', 'dead', 'cancelled')"
            ),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead', 'cancelled', 'held')", name="status"
        ),
    )

    id: uuid.UUID = uuid_pk()
    kind: str = Field(max_length=32, index=True)  # notification | webhook | job
    topic: str = Field(max_length=64)  # template, event type or job name
    target: str | None = Field(default=None, max_length=64, index=True)  # channel or processor code
    # Encrypted JSON: payloads hold destinations and personal data. NULL once destroyed
    # (app/outbox/retention.py); the row stays as the delivery record.
    payload: bytes | None = Field(default=None, sa_type=sa.LargeBinary, nullable=True)
    # held: not sent until an operator acts (e.g. a webhook for a disabled processor)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    max_attempts: int | None = None
    next_attempt_at: datetime = timestamp()
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()
    delivered_at: datetime | None = timestamp(nullable=True)
    payload_destroyed_at: datetime | None = timestamp(nullable=True)
    last_error: str | None = Field(default=None, max_length=1024)
    # The request this message belongs to, if any (no FK: the outbox outlives requests).
    request_ref: uuid.UUID | None = Field(default=None, sa_type=sa.Uuid, index=True)
    # Set for notices that must go at most once (e.g. "received" for a request).
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)


class PeriodicRun(SQLModel, table=True):
    """One run of a periodic job in one slot: the primary key lets one worker of N claim it."""

    __tablename__ = "periodic_run"

    job: str = Field(primary_key=True, max_length=64)
    # The start of the interval this run covers (the job's first run, plus whole intervals).
    slot: datetime = Field(primary_key=True, sa_type=sa.DateTime(timezone=True))
    started_at: datetime = timestamp()
    finished_at: datetime | None = timestamp(nullable=True)
    count: int | None = None
    error: str | None = Field(default=None, max_length=200)
