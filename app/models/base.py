"""Shared table machinery: the naming convention and column helpers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = SQLModel.metadata


def uuid_pk() -> Any:
    return Field(default_factory=uuid.uuid4, primary_key=True, sa_type=sa.Uuid)


def timestamp(*, nullable: bool = False, index: bool = False) -> Any:
    """An aware timestamp column; values come from the service clock, never the database's."""
    return Field(
        default=None if nullable else ...,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=nullable, index=index),
    )


def utc(value: datetime) -> datetime:
    """Guard: every stored time is aware."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value
