"""One-time-code verifications: proof that someone holds a phone number or e-mail address."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk


class Verification(SQLModel, table=True):
    """A code sent to a destination; confirmed once, or dead after too many wrong tries.

    Holds no clear personal data: the destination is encrypted (bound to the row id) and looked
    up by blind index, the code only as a keyed HMAC, the client IP only as a keyed HMAC. The
    rows are also the rate-limit state (codes per destination and per client in the window), so
    every API replica sees the same counts. Purged after ``verification_retention_hours``.
    """

    __tablename__ = "verification"
    __table_args__ = (
        sa.Index("ix_verification_destination_created", "destination_index", "created_at"),
        sa.Index("ix_verification_client_created", "client_mac", "created_at"),
        sa.CheckConstraint("status IN ('pending', 'confirmed', 'dead')", name="status"),
        sa.CheckConstraint("channel IN ('sms', 'email')", name="channel"),
    )

    id: uuid.UUID = uuid_pk()
    channel: str = Field(max_length=8)
    destination_index: str = Field(max_length=64)
    destination_encrypted: bytes = Field(sa_type=sa.LargeBinary)
    code_mac: str = Field(max_length=64)
    client_mac: str = Field(max_length=64)
    locale: str = Field(default="ko", max_length=8)
    status: str = Field(default="pending", max_length=16)
    wrong_attempts: int = 0
    created_at: datetime = timestamp(index=True)
    expires_at: datetime = timestamp()
    confirmed_at: datetime | None = timestamp(nullable=True)
    # A verified subject adding this identifier: the blind indexes and kinds they already
    # proved, carried into the new token on confirmation (no personal data).
    link_to: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))
