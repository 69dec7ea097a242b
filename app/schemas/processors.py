"""Bodies of the processors registry, deliveries and acknowledgements (staff and partners)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.types import Instant
from app.webhooks.signing import EVENT_TYPES, EventType

ProcessorState = Literal["active", "disabled"]
DeliveryStatus = Literal["pending", "delivered", "dead", "held", "cancelled"]
AckStatus = Literal["applied", "rejected"]

CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{1,31}$"


class ProcessorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN, examples=["hct-tw"], description="Stable short code")
    name: str = Field(min_length=1, max_length=200, examples=["HCT"])
    nation: str = Field(min_length=2, max_length=64, examples=["Taiwan"])
    contact: str | None = Field(default=None, max_length=320, examples=["privacy@hct.example"])
    webhook_url: str = Field(max_length=2048, examples=["https://hooks.hct.example/qx-dsr"])
    events: list[EventType] = Field(
        default_factory=lambda: list(EVENT_TYPES), min_length=1, description="Subscribed events"
    )
    state: ProcessorState = "active"


class ProcessorUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    nation: str | None = Field(default=None, min_length=2, max_length=64)
    contact: str | None = Field(default=None, max_length=320)
    webhook_url: str | None = Field(default=None, max_length=2048)
    events: list[EventType] | None = Field(default=None, min_length=1)
    state: ProcessorState | None = Field(
        default=None,
        description="disabled holds new and pending notices; active sends the held ones again",
    )


class DeliveryCounts(BaseModel):
    pending: int = 0
    held: int = 0
    dead: int = 0
    delivered: int = 0
    awaiting_acknowledgement: int = 0


class ProcessorPublic(BaseModel):
    code: str
    name: str
    nation: str
    contact: str | None
    webhook_url: str
    events: list[str]
    state: ProcessorState
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    secret_rotated_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then both the previous and the current secret sign each webhook"
    )
    created_at: datetime
    updated_at: datetime
    deliveries: DeliveryCounts | None = None


class ProcessorCreated(ProcessorPublic):
    secret: str = Field(description="Shown once: keep it to verify our webhooks and sign yours")


class SecretRotated(BaseModel):
    code: str
    secret: str = Field(description="The new secret, shown once")
    previous_secret_expires_at: datetime = Field(
        description="Until then webhooks carry signatures by both secrets"
    )


class AttemptPublic(BaseModel):
    attempt: int
    at: datetime
    outcome: str = Field(description="delivered | failed | gone | refused | held")
    status_code: int | None
    latency_ms: int | None
    error: str | None
    response_bytes: int | None = Field(
        description="Size of the reply read (at most its first 1 KB); the body is not kept"
    )
    response_digest: str | None = Field(
        description="Keyed HMAC-SHA256 of that first 1 KB: equal replies, equal digests"
    )


class AcknowledgementPublic(BaseModel):
    status: AckStatus
    received_at: datetime
    note: str | None = None


class DeliveryPublic(BaseModel):
    id: uuid.UUID
    webhook_id: str
    processor: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    max_attempts: int | None
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    request_ref: uuid.UUID | None
    acknowledgement: AcknowledgementPublic | None = None


class DeliveryDetail(DeliveryPublic):
    attempt_log: list[AttemptPublic]


class DeliveryPage(BaseModel):
    items: list[DeliveryPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class ReplayResult(BaseModel):
    replayed: int


class BulkReplay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Instant | None = Field(default=None, description="Only deliveries created since")


class AcknowledgementCreate(BaseModel):
    """What a processor sends, signed with its secret like our webhooks."""

    model_config = ConfigDict(extra="forbid")

    webhook_id: str = Field(max_length=128, examples=["msg_2f1c0e..."])
    status: AckStatus
    note: str | None = Field(default=None, max_length=2000)


class AcknowledgementReceipt(BaseModel):
    webhook_id: str
    processor: str
    status: AckStatus
    received_at: datetime
    duplicate: bool = Field(description="True when this acknowledgement was already recorded")


class ProcessorConfirmationPublic(BaseModel):
    """For a request's staff view: which processors were notified and which confirmed."""

    model_config = ConfigDict(from_attributes=True)

    processor: str
    processor_name: str | None
    event_type: str
    webhook_id: str
    delivery_status: DeliveryStatus
    delivered_at: datetime | None
    acknowledgement: AckStatus | None
    acknowledged_at: datetime | None
