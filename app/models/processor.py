"""Processors (partner carriers and other recipients of personal data) and their webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk


class Processor(SQLModel, table=True):
    """A party that receives notices: a processor (correction, deletion, suspension) or a
    controller that supplied data (correction/deletion requests, Decree Art. 43(2)), by signed
    webhook or by e-mail with a confirmation page.

    Secrets are stored encrypted (AAD ``processor-secret:<id>``). During a rotation's grace
    period the previous secret still signs, so a partner can switch without losing a notice.
    The e-mail address is the partner's staff's personal data: encrypted
    (AAD ``processor-email:<id>``), shown masked.
    """

    __tablename__ = "processor"
    __table_args__ = (
        sa.CheckConstraint("state IN ('active', 'disabled')", name="state"),
        sa.CheckConstraint("party IN ('processor', 'controller')", name="party"),
        sa.CheckConstraint("channel IN ('webhook', 'email')", name="channel"),
        sa.CheckConstraint(
            "(channel = 'webhook' AND webhook_url IS NOT NULL)"
            " OR (channel = 'email' AND email_encrypted IS NOT NULL)",
            name="channel_address",
        ),
    )

    id: uuid.UUID = uuid_pk()
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=200)
    nation: str = Field(max_length=64)
    contact: str | None = Field(default=None, max_length=320)
    party: str = Field(default="processor", max_length=16)
    channel: str = Field(default="webhook", max_length=16)
    webhook_url: str | None = Field(default=None, max_length=2048)
    email_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    email_masked: str | None = Field(default=None, max_length=320)  # p***@hct.example
    # The language of e-mail notices: ko, en, ja, zh-Hans, zh-Hant.
    language: str = Field(default="en", max_length=16)
    events: list[str] = Field(default_factory=list, sa_column=sa.Column(JSONB, nullable=False))
    state: str = Field(default="active", max_length=16)
    disabled_reason: str | None = Field(default=None, max_length=200)
    disabled_at: datetime | None = timestamp(nullable=True)
    secret_encrypted: bytes = Field(sa_type=sa.LargeBinary)
    previous_secret_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    previous_secret_expires_at: datetime | None = timestamp(nullable=True)
    secret_rotated_at: datetime | None = timestamp(nullable=True)
    # Start of the current run of failed attempts (None after a success): 5 days straight disables.
    failing_since: datetime | None = timestamp(nullable=True)
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt at delivering a webhook (the outbox message is the delivery)."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (sa.Index("ix_webhook_attempt_message", "message_id", "attempt"),)

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, primary_key=True))
    message_id: uuid.UUID = Field(sa_type=sa.Uuid)
    processor_code: str = Field(max_length=32, index=True)
    event_type: str = Field(max_length=64)
    attempt: int
    at: datetime = timestamp(index=True)
    outcome: str = Field(max_length=16)  # delivered | failed | gone | refused | held
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = Field(default=None, max_length=500)
    # Not the reply itself (a partner echoing a notice would leave corrected values here):
    # its size and a keyed digest of its first 1 KB, enough to tell two replies apart.
    response_bytes: int | None = None
    response_digest: str | None = Field(default=None, max_length=64)


class WebhookAcknowledgement(SQLModel, table=True):
    """A processor's signed confirmation that it applied (or rejected) one notice."""

    __tablename__ = "webhook_acknowledgement"
    __table_args__ = (
        sa.CheckConstraint("status IN ('applied', 'rejected')", name="status"),
        sa.UniqueConstraint("processor_code", "ack_message_id", name="uq_webhook_ack_message"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, primary_key=True))
    message_id: uuid.UUID = Field(sa_type=sa.Uuid, index=True)
    processor_code: str = Field(max_length=32, index=True)
    # The partner's own ``webhook-id`` for the acknowledgement: a resent one is recorded once.
    ack_message_id: str = Field(max_length=128)
    status: str = Field(max_length=16)
    # Free text from the partner; may mention a person, so it is stored encrypted.
    note_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    received_at: datetime = timestamp()


class PartnerFollowUp(SQLModel, table=True):
    """An e-mailed notice awaiting the partner's confirmation: reminders and the escalation."""

    __tablename__ = "partner_follow_up"

    message_id: uuid.UUID = Field(sa_type=sa.Uuid, primary_key=True)
    processor_code: str = Field(max_length=32, index=True)
    emailed_at: datetime = timestamp()
    reminders: int = 0
    last_reminded_at: datetime | None = timestamp(nullable=True)
    # Set once, by the one worker whose UPDATE wins: the privacy officer is told once.
    escalated_at: datetime | None = timestamp(nullable=True)
    # The notice body for reminders (the outbox payload is destroyed days after delivery);
    # encrypted (AAD ``partner-follow-up:<message id>``), destroyed once the partner confirms.
    body_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
