"""Restrictions (pending corrections) and suspensions of processing, enforced by usage checks."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk


class ProcessingRestriction(SQLModel, table=True):
    """An item of a subject that is "not used or provided" while a correction is pending.

    Policy section 6 / PIPA Art. 36. One row per subject key (blind index) and item, optionally
    narrowed to a role (sender, recipient...) or one record; active while ``lifted_at`` is null.
    """

    __tablename__ = "processing_restriction"
    __table_args__ = (
        # The usage check's lookup: active restrictions of these subject keys.
        sa.Index(
            "ix_processing_restriction_active",
            "subject_key",
            "item",
            postgresql_where=sa.text("lifted_at IS NULL"),
        ),
        # Restricting the same thing twice for one request is a no-op.
        sa.Index(
            "uq_processing_restriction_scope",
            "request_id",
            "subject_key",
            "item",
            "role",
            "record_ref",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: uuid.UUID = uuid_pk()
    subject_key: str = Field(max_length=64)
    item: str = Field(max_length=32)
    role: str | None = Field(default=None, max_length=32)
    record_ref: str | None = Field(default=None, max_length=200)
    # The request that caused it (no FK: requests live in another module and may be purged).
    request_id: uuid.UUID = Field(sa_type=sa.Uuid)
    created_at: datetime = timestamp()
    lifted_at: datetime | None = timestamp(nullable=True)


class ProcessingSuspension(SQLModel, table=True):
    """Processing for one purpose suspended for a subject (PIPA Art. 37), or consent withdrawn."""

    __tablename__ = "processing_suspension"
    __table_args__ = (
        sa.Index(
            "ix_processing_suspension_active",
            "subject_key",
            "purpose",
            postgresql_where=sa.text("lifted_at IS NULL"),
        ),
        sa.UniqueConstraint("request_id", "subject_key", "purpose"),
    )

    id: uuid.UUID = uuid_pk()
    subject_key: str = Field(max_length=64)
    purpose: str = Field(max_length=32)
    request_id: uuid.UUID = Field(sa_type=sa.Uuid)  # no FK, as above
    consent_withdrawal: bool = False
    since: datetime = timestamp()
    lifted_at: datetime | None = timestamp(nullable=True)
