"""A verified identifier of a data subject, kept encrypted with a blind index for lookup."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import timestamp, uuid_pk


class SubjectIdentifier(SQLModel, table=True):
    """A phone number or e-mail address someone proved they hold (or an agent verified).

    ``blind_index`` (HMAC of the normalised value) is what tokens and requests refer to;
    the value itself is only stored encrypted.
    """

    __tablename__ = "subject_identifier"

    id: uuid.UUID = uuid_pk()
    kind: str = Field(max_length=16)  # phone | email
    blind_index: str = Field(max_length=64, unique=True)
    value_encrypted: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = timestamp()
