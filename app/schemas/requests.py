"""Bodies of the data-subject request API (the app) and the views shared with staff."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.requests.bodies import normalise_new_value
from app.vocabulary import CATEGORIES, ITEMS, PURPOSES, CategoryCode, ItemCode, PurposeCode

RequestType = Literal["access", "correction", "deletion", "suspension", "consent_withdrawal"]
RequestStatus = Literal[
    "received",
    "in_review",
    "in_progress",
    "completed",
    "partially_completed",
    "refused",
    "withdrawn",
]

RECORD_REF_PATTERN = r"^[A-Za-z0-9._:/-]{1,64}$"


class CorrectionIn(BaseModel):
    """One value to correct. ``record_ref`` narrows it to one record (e.g. a tracking number)."""

    model_config = ConfigDict(extra="forbid")

    item: ItemCode
    new_value: str = Field(min_length=1, max_length=500)
    record_ref: str | None = Field(default=None, pattern=RECORD_REF_PATTERN)

    @field_validator("new_value")
    @classmethod
    def _valid_for_item(cls, value: str, info: ValidationInfo) -> str:
        item = info.data.get("item")
        if item is None:
            return value  # the item itself is invalid; that error is reported
        return normalise_new_value(item, value)


class EvidenceIn(BaseModel):
    """What backs a correction: the kind of document and where it is kept, never the file."""

    model_config = ConfigDict(extra="forbid")

    document_kind: Literal[
        "id_card",
        "driver_license",
        "passport",
        "family_relation_certificate",
        "business_registration",
        "delivery_document",
        "other",
    ]
    description: str | None = Field(default=None, max_length=200)
    reference: str | None = Field(default=None, max_length=200)


class RequestCreate(BaseModel):
    """A request. Fields beyond ``type`` depend on it:

    - ``access``: nothing more;
    - ``correction``: ``corrections`` (1-20) and optional ``evidence`` metadata;
    - ``deletion``: optional ``items`` and/or ``categories`` (absent: everything that may go);
    - ``suspension`` and ``consent_withdrawal``: ``purposes`` (at least one).
    """

    model_config = ConfigDict(extra="forbid")

    type: RequestType
    locale: Literal["ko", "en"] | None = Field(
        default=None, description="language of notices (default: Korean)"
    )
    corrections: list[CorrectionIn] | None = Field(default=None, min_length=1, max_length=20)
    evidence: list[EvidenceIn] | None = Field(default=None, max_length=5)
    items: list[ItemCode] | None = Field(default=None, min_length=1, max_length=len(ITEMS))
    categories: list[CategoryCode] | None = Field(
        default=None, min_length=1, max_length=len(CATEGORIES)
    )
    purposes: list[PurposeCode] | None = Field(default=None, min_length=1, max_length=len(PURPOSES))

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> RequestCreate:
        allowed = {
            "access": set(),
            "correction": {"corrections", "evidence"},
            "deletion": {"items", "categories"},
            "suspension": {"purposes"},
            "consent_withdrawal": {"purposes"},
        }[self.type]
        given = {
            name
            for name in ("corrections", "evidence", "items", "categories", "purposes")
            if getattr(self, name) is not None
        }
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"{', '.join(extra)} not allowed for a {self.type} request")
        if self.type == "correction" and self.corrections is None:
            raise ValueError("corrections is required for a correction request")
        if self.type in ("suspension", "consent_withdrawal") and self.purposes is None:
            raise ValueError(f"purposes is required for a {self.type} request")
        if self.corrections:
            keys = [(entry.item, entry.record_ref) for entry in self.corrections]
            if len(set(keys)) != len(keys):
                raise ValueError("corrections names the same item and record twice")
        for name in ("items", "categories", "purposes"):
            values = getattr(self, name)
            if values is not None:
                setattr(self, name, list(dict.fromkeys(values)))
        return self

    def body(self) -> dict[str, Any]:
        """The type-specific body as stored (encrypted)."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"type", "locale"})


class RequestSummary(BaseModel):
    id: uuid.UUID
    type: RequestType
    status: RequestStatus
    received_at: datetime
    due_at: datetime
    received_at_local: datetime = Field(description="received_at in Asia/Seoul")
    due_at_local: datetime = Field(description="due_at in Asia/Seoul (end of the due day)")
    days_left: int = Field(description="whole days to the due day in Asia/Seoul; negative if late")
    overdue: bool


class RefusalOut(BaseModel):
    item: str | None = Field(description="item, category or purpose refused; null: the whole")
    item_label: str | None
    ground: str
    ground_label: str
    legal_source: str
    stage: Literal["decision", "fulfilment"]


class DecisionOut(BaseModel):
    result: Literal["approved", "partially_approved", "refused"]
    decided_at: datetime
    refusals: list[RefusalOut]
    explanation: str | None


class ObjectionOut(BaseModel):
    id: uuid.UUID
    status: Literal["open", "upheld", "dismissed"]
    submitted_at: datetime
    due_at: datetime
    due_at_local: datetime
    reason: str
    decided_at: datetime | None
    explanation: str | None


class RequestDetail(RequestSummary):
    locale: Literal["ko", "en"]
    body: dict[str, Any]
    decision: DecisionOut | None
    fulfilment_refusals: list[RefusalOut] = Field(
        description="items the fulfilment could not grant, with their ground"
    )
    completed_at: datetime | None
    withdrawn_at: datetime | None
    objection_until: datetime | None = Field(
        description="the last moment an objection can be made (PIPA Art. 38(5))"
    )
    objections: list[ObjectionOut]


class RequestList(BaseModel):
    items: list[RequestSummary]


class ObjectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class RefusalGroundOut(BaseModel):
    code: str
    applies_to: list[RequestType]
    label_ko: str
    label_en: str
    legal_source_ko: str
    legal_source_en: str


class RefusalGroundList(BaseModel):
    items: list[RefusalGroundOut]
