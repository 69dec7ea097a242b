"""Records kept under another law after deletion, each sealed with its own data key."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk


class RetainedRecord(SQLModel, table=True):
    """A separated copy of a record the law requires to keep (PIPA Art. 21(3), policy section 2).

    ``payload`` is sealed (AES-256-GCM) with a random data key of its own, kept wrapped in
    ``retention_key`` under the same id. Destroying that key makes the payload unrecoverable
    (crypto-shredding), then the row goes too. Everything outside ``payload`` is metadata without
    personal data: ``record_key`` is the source's record id (e.g. a tracking number), never an
    identifier of a person, and ``subject_key`` is a blind index.
    """

    __tablename__ = "retained_record"
    __table_args__ = (
        # The same record part is retained once (a retried deletion does not copy it twice).
        sa.Index(
            "uq_retained_record_origin",
            "source",
            "collection",
            "record_key",
            "subject_key",
            "role",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )

    id: uuid.UUID = uuid_pk()
    source: str = Field(max_length=64)
    collection: str = Field(max_length=64)
    record_key: str = Field(max_length=200)
    subject_key: str = Field(max_length=64, index=True)
    role: str | None = Field(default=None, max_length=32)
    items: list[str] = Field(
        default_factory=list, sa_column=sa.Column(ARRAY(sa.String(32)), nullable=False)
    )
    rule: str = Field(max_length=32)
    legal_basis_ko: str = Field(max_length=200)
    legal_basis_en: str = Field(max_length=200)
    clock_start: datetime = timestamp()
    destroy_after: datetime = timestamp(index=True)
    retained_at: datetime = timestamp()
    request_id: uuid.UUID | None = Field(default=None, sa_type=sa.Uuid, index=True)
    payload: bytes = Field(sa_type=sa.LargeBinary)


class RetentionKey(SQLModel, table=True):
    """The data key of one retained record, wrapped by the retention master key.

    No foreign key to ``retained_record`` on purpose: the key is destroyed first, and the table
    can live apart (another tablespace, shorter backup retention) from the sealed payloads.
    """

    __tablename__ = "retention_key"

    id: uuid.UUID = Field(primary_key=True, sa_type=sa.Uuid)  # = retained_record.id
    kek_version: int = Field(default=1, sa_type=sa.SmallInteger)
    wrapped_key: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = timestamp()
