"""Bodies of the usage-check API (internal systems ask before using a person's data)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.vocabulary import ItemCode as Item
from app.vocabulary import PurposeCode as Purpose


class UsageIdentifiers(BaseModel):
    """How the caller knows the person; at least one. Never stored, never logged."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, min_length=1, max_length=32, examples=["010-1234-5678"])
    email: str | None = Field(default=None, min_length=3, max_length=254)

    @model_validator(mode="after")
    def _at_least_one(self) -> UsageIdentifiers:
        if self.phone is None and self.email is None:
            raise ValueError("Give at least one identifier: phone or email.")
        return self


class UsageCheckCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifiers: UsageIdentifiers
    purpose: Purpose
    items: list[Item] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="The items about to be used; omitted: any item of the person",
    )


class UsageReasonPublic(BaseModel):
    code: Literal["correction_pending", "processing_suspended"]
    request_id: uuid.UUID
    item: Item | None = Field(default=None, description="correction_pending: the restricted item")
    purpose: Purpose | None = Field(
        default=None, description="processing_suspended: the suspended purpose"
    )


class UsageCheckPublic(BaseModel):
    allowed: bool
    reasons: list[UsageReasonPublic]
