"""Data-subject requests, their history, objections and idempotency records.

Anything a person typed (correction values, explanations, reasons) is stored encrypted in the
``*_encrypted`` columns; the JSONB columns hold codes, ids and dates only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk

OPEN_STATUSES = ("received", "in_review", "in_progress")
CLOSED_STATUSES = ("completed", "partially_completed", "refused", "withdrawn")
STATUSES = OPEN_STATUSES + CLOSED_STATUSES
TYPES = ("access", "correction", "deletion", "suspension", "consent_withdrawal")


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class DsrRequest(SQLModel, table=True):
    """One request from a data subject (or their representative), from intake to its answer."""

    __tablename__ = "dsr_request"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_quoted(STATUSES)})", name="status"),
        sa.CheckConstraint(f"type IN ({_quoted(TYPES)})", name="type"),
        sa.Index("ix_dsr_request_queue", "due_at", "id"),
        # The staff queue's filters, each in (due_at, id) order for keyset pages (0012).
        sa.Index("ix_dsr_request_status_due", "status", "due_at", "id"),
        sa.Index("ix_dsr_request_type_due", "type", "due_at", "id"),
        sa.Index(
            "ix_dsr_request_open_due",
            "due_at",
            "id",
            postgresql_where=sa.text(f"status IN ({_quoted(OPEN_STATUSES)})"),
        ),
        sa.Index(
            "ix_dsr_request_fulfilment_due",
            "fulfilment_state",
            "due_at",
            "id",
            postgresql_where=sa.text("fulfilment_state IS NOT NULL"),
        ),
        sa.Index("ix_dsr_request_received", "received_at", "id"),
        sa.Index(
            "ix_dsr_request_subject_indexes",
            "subject_indexes",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
        # Backstop for "one open request of a type per subject" (the service also locks).
        sa.Index(
            "uq_dsr_request_open_per_subject",
            "subject_index",
            "type",
            unique=True,
            postgresql_where=sa.text(f"status IN ({_quoted(OPEN_STATUSES)})"),
        ),
    )

    id: uuid.UUID = uuid_pk()
    type: str = Field(max_length=32)
    status: str = Field(max_length=32)
    # Blind indexes of the subject's identifiers this request acts on; the first is primary.
    subject_index: str = Field(max_length=64, index=True)
    subject_indexes: list[str] = Field(
        default_factory=list, sa_column=sa.Column(ARRAY(sa.String(64)), nullable=False)
    )
    identifier_ids: list[uuid.UUID] = Field(
        default_factory=list, sa_column=sa.Column(ARRAY(sa.Uuid), nullable=False)
    )
    # Where notices go: a verified identifier and its channel (sms | email).
    notice_identifier_id: uuid.UUID = Field(
        sa_column=sa.Column(sa.Uuid, sa.ForeignKey("subject_identifier.id"), nullable=False)
    )
    notice_channel: str = Field(max_length=8)
    intake_channel: str = Field(max_length=16)  # app | web (privacy center) | phone | counter
    verification_method: str = Field(max_length=16)  # otp | agent | representative
    # How identity was verified: agent check, representative relation and proof, who checked.
    verification: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONB, nullable=False)
    )
    locale: str = Field(default="ko", max_length=2)
    scope: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(JSONB, nullable=False))
    body_encrypted: bytes = Field(sa_type=sa.LargeBinary)
    created_by: str = Field(max_length=128)

    received_at: datetime = timestamp()
    due_at: datetime = timestamp()
    original_due_at: datetime = timestamp()
    extensions: int = 0
    # Incremented when an upheld objection reopens the request (keys notices per round).
    round: int = 1

    review_started_at: datetime | None = timestamp(nullable=True)
    # A refusal proposed by one staff member, waiting for a privacy officer (four-eyes).
    proposal: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))
    proposal_note_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)

    decision: str | None = Field(
        default=None, max_length=32
    )  # approved | partially_approved | refused
    decided_at: datetime | None = timestamp(nullable=True)
    decided_by: str | None = Field(default=None, max_length=128)
    # [{"item": code | null, "ground": code, "stage": "decision" | "fulfilment"}]
    refusals: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(JSONB, nullable=False)
    )
    decision_note_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)

    fulfilment_state: str | None = Field(default=None, max_length=16)  # queued | failed | done
    fulfilment_attempts: int = 0
    fulfilment_error: str | None = Field(default=None, max_length=200)
    result_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)

    completed_at: datetime | None = timestamp(nullable=True)
    withdrawn_at: datetime | None = timestamp(nullable=True)
    # When the subject was told of a refusal: the objection window counts from here.
    objectable_since: datetime | None = timestamp(nullable=True)
    # The staff member who owns the request (their user id at the identity provider).
    assignee: str | None = Field(default=None, max_length=128, index=True)
    assigned_at: datetime | None = timestamp(nullable=True)
    # When the privacy officer was told the request is overdue (once per due date).
    overdue_alerted_at: datetime | None = timestamp(nullable=True)
    updated_at: datetime = timestamp()


class DsrRequestEvent(SQLModel, table=True):
    """The request's history: every transition, decision, proposal and notice, in order."""

    __tablename__ = "dsr_request_event"

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, primary_key=True))
    request_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("dsr_request.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    at: datetime = timestamp()
    actor: str = Field(max_length=128)
    role: str = Field(max_length=32)
    action: str = Field(max_length=64)
    from_status: str | None = Field(default=None, max_length=32)
    to_status: str | None = Field(default=None, max_length=32)
    details: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONB, nullable=False)
    )
    note_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)


class DsrObjection(SQLModel, table=True):
    """An objection to a decision (PIPA Art. 38(5)), reviewed by a privacy officer by a due date."""

    __tablename__ = "dsr_objection"
    __table_args__ = (
        sa.CheckConstraint("status IN ('open', 'upheld', 'dismissed')", name="status"),
        sa.Index("ix_dsr_objection_queue", "due_at", "id"),
    )

    id: uuid.UUID = uuid_pk()
    request_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("dsr_request.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    round: int = 1
    status: str = Field(default="open", max_length=16, index=True)
    submitted_at: datetime = timestamp()
    due_at: datetime = timestamp()
    reason_encrypted: bytes = Field(sa_type=sa.LargeBinary)
    decided_at: datetime | None = timestamp(nullable=True)
    decided_by: str | None = Field(default=None, max_length=128)
    outcome_note_encrypted: bytes | None = Field(default=None, sa_type=sa.LargeBinary)


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a creating call, replayed for the same Idempotency-Key and body."""

    __tablename__ = "idempotency_record"
    __table_args__ = (sa.UniqueConstraint("principal", "key", name="uq_idempotency_record_key"),)

    id: uuid.UUID = uuid_pk()
    principal: str = Field(max_length=128)
    key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=64)
    status_code: int | None = None
    response: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))
    created_at: datetime = timestamp()
    expires_at: datetime = timestamp(index=True)
