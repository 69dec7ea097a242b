"""Access reports, kept encrypted for a limited time."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk


class AccessReportRecord(SQLModel, table=True):
    """One generated access report, sealed (AES-256-GCM over the compressed JSON).

    ``content`` is destroyed when the report expires; the row stays as a tombstone so a late
    download gets "gone" rather than "not found".
    """

    __tablename__ = "access_report"

    id: uuid.UUID = uuid_pk()
    # The request this answers (no FK: requests and reports are owned by different modules).
    request_id: uuid.UUID = Field(sa_type=sa.Uuid, unique=True)
    subject_blind_index: str = Field(max_length=64, index=True)
    created_at: datetime = timestamp()
    expires_at: datetime = timestamp(index=True)
    purged_at: datetime | None = timestamp(nullable=True)
    content: bytes | None = Field(default=None, sa_type=sa.LargeBinary, nullable=True)
