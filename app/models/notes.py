"""Internal notes staff leave on a request: encrypted, never shown to the subject."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk


class DsrRequestNote(SQLModel, table=True):
    """One note: who wrote it, when, and its text sealed to this row."""

    __tablename__ = "dsr_request_note"
    __table_args__ = (sa.Index("ix_dsr_request_note_request", "request_id", "at"),)

    id: uuid.UUID = uuid_pk()
    request_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("dsr_request.id", ondelete="CASCADE"), nullable=False
        )
    )
    at: datetime = timestamp()
    author: str = Field(max_length=128)
    role: str = Field(max_length=32)
    text_encrypted: bytes = Field(sa_type=sa.LargeBinary)
