"""Bodies of the processors registry, deliveries and acknowledgements (staff and partners)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.schemas.types import Instant
from app.webhooks.signing import EventType

ProcessorState = Literal["active", "disabled"]
Party = Literal["processor", "controller"]
Channel = Literal["webhook", "email"]
Language = Literal["ko", "en", "ja", "zh-Hans", "zh-Hant"]
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
DeliveryStatus = Literal["pending", "delivered", "dead", "held", "cancelled"]
AckStatus = Literal["applied", "rejected"]

CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{1,31}$"

# ISO 3166-1 alpha-2, the officially assigned codes; ZZ (user-assigned, "unknown region" in
# CLDR) for a processor serving several or unnamed countries (the policy's "other nations").
_ALPHA2_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
    ZW
"""
ISO_3166_ALPHA2 = frozenset(_ALPHA2_CODES.split())
SEVERAL_NATIONS = "ZZ"


def _nation(value: str) -> str:
    code = value.upper()
    if code != SEVERAL_NATIONS and code not in ISO_3166_ALPHA2:
        raise ValueError(
            "Use an ISO 3166-1 alpha-2 country code (KR, TW, JP), or ZZ for several countries."
        )
    return code


Nation = Annotated[
    str,
    Field(
        examples=["TW"],
        json_schema_extra={"pattern": "^[A-Za-z]{2}$"},
        description="ISO 3166-1 alpha-2 country code; ZZ for several or unnamed countries",
    ),
    AfterValidator(_nation),
]


class ProcessorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN, examples=["hct-tw"], description="Stable short code")
    name: str = Field(min_length=1, max_length=200, examples=["HCT"])
    nation: Nation
    contact: str | None = Field(default=None, max_length=320, examples=["privacy@hct.example"])
    party: Party = Field(
        default="processor",
        description="processor: told of changes; controller: supplied data, asked to correct or "
        "delete it (Decree Art. 43(2))",
    )
    channel: Channel = Field(
        default="webhook", description="webhook: signed POST; email: e-mail with a confirm page"
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        examples=["https://hooks.hct.example/qx-dsr"],
        validate_default=True,
    )
    email: str | None = Field(
        default=None,
        max_length=320,
        pattern=EMAIL_PATTERN,
        description="where e-mailed notices go (stored encrypted, shown masked)",
        validate_default=True,
    )
    language: Language | None = Field(
        default=None, description="language of e-mailed notices (default: from the nation)"
    )
    events: list[EventType] | None = Field(
        default=None,
        min_length=1,
        description="Subscribed events (default: the three changes for a processor, the two "
        "requests for a controller)",
    )
    state: ProcessorState = "active"

    # Checked per field (not on the whole model) so that the error points at the missing address.
    @field_validator("webhook_url", "email")
    @classmethod
    def _address_of_the_channel(cls, value: str | None, info: ValidationInfo) -> str | None:
        channel = info.data.get("channel")
        if not value and channel == "webhook" and info.field_name == "webhook_url":
            raise ValueError("Required when channel is webhook.")
        if not value and channel == "email" and info.field_name == "email":
            raise ValueError("Required when channel is email.")
        return value


class ProcessorUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    nation: Nation | None = None
    contact: str | None = Field(default=None, max_length=320)
    webhook_url: str | None = Field(default=None, max_length=2048)
    channel: Channel | None = None
    email: str | None = Field(
        default=None, max_length=320, pattern=EMAIL_PATTERN, description="a new address (rotation)"
    )
    language: Language | None = None
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
    party: Party
    channel: Channel
    webhook_url: str | None
    email: str | None = Field(description="the e-mail address, masked")
    language: Language
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


class FollowUpPublic(BaseModel):
    """An e-mailed notice's follow-up until the partner confirms it."""

    model_config = ConfigDict(from_attributes=True)

    emailed_at: datetime
    reminders: int
    last_reminded_at: datetime | None
    escalated_at: datetime | None = Field(description="when the privacy officer was told")


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
    follow_up: FollowUpPublic | None = Field(
        default=None, description="e-mailed notices: reminders sent, escalation"
    )


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
    party: Party | None = Field(description="processor, or controller that supplied the data")
    channel: Channel | None
    event_type: str
    webhook_id: str
    delivery_status: DeliveryStatus
    delivered_at: datetime | None
    acknowledgement: AckStatus | None
    acknowledged_at: datetime | None
    note: str | None = Field(default=None, description="the partner's reason, if it gave one")
    follow_up: FollowUpPublic | None = None
