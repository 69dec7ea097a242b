"""The audit trail: every state change, decision, notice and staff read, hash-chained."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import timestamp


class AuditEntry(SQLModel, table=True):
    """One audited event.

    Written with a plain INSERT in the transaction of the change it records; the sealer then
    gives it its place in the chain (``seq``) and a ``hash`` over the entry and ``prev_hash``, so
    an edit or a deletion of a sealed entry breaks the chain. ``details`` never hold personal
    data: ids, codes, counts and reasons only.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        sa.Index("ix_audit_entry_unsealed", "id", postgresql_where=sa.text("seq IS NULL")),
    )

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.Identity(always=False), primary_key=True),
    )
    at: datetime = timestamp(index=True)
    actor: str = Field(max_length=128, index=True)
    role: str = Field(max_length=32)
    action: str = Field(max_length=64, index=True)
    target_type: str | None = Field(default=None, max_length=32)
    target_id: str | None = Field(default=None, max_length=64, index=True)
    # A keyed hash of the caller's address (entries before revision 0014: the address itself).
    client_ip: str | None = Field(default=None, max_length=64)
    # Staff, partners and services only: the address encrypted (the access-record rule).
    client_ip_encrypted: bytes | None = Field(
        default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True)
    )
    details: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONB, nullable=False)
    )
    # Set by the sealer: the position in the chain and the hashes.
    seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, unique=True))
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)
