"""Bodies of the public identity-verification endpoints and the caller's own identity."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class VerificationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "email"]
    destination: str = Field(
        min_length=1,
        max_length=320,
        description="A mobile number as people type it (010-1234-5678, +82 10 1234 5678) "
        "or an e-mail address",
        examples=["010-1234-5678"],
    )
    locale: Literal["ko", "en"] | None = Field(
        default=None, description="Language of the message; Korean when not given"
    )


class VerificationPublic(BaseModel):
    verification_id: uuid.UUID
    expires_at: datetime
    masked_destination: str = Field(examples=["010-****-5678"])


class VerificationConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$", description="The 6-digit code that was sent")


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int = Field(description="Seconds until the token expires")


class PrincipalPublic(BaseModel):
    """Who the bearer token says the caller is (no identifier in clear)."""

    kind: Literal["subject", "staff", "service"]
    roles: list[str]
    identifier_kinds: list[str]
    amr: list[str] = Field(description="How the subject proved who they are: otp, mobile_app")
    expires_at: datetime | None
