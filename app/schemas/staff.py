"""Bodies of the support-center API: intake, decisions, the queue, details, objections, audit."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.requests.decisions import EXPLANATION_MAX
from app.schemas.notes import NoteOut
from app.schemas.processors import ProcessorConfirmationPublic
from app.schemas.requests import (
    DecisionOut,
    ObjectionOut,
    RefusalOut,
    RequestCreate,
    RequestStatus,
    RequestSummary,
)
from app.schemas.types import Instant

GroundCode = Literal[
    "pipa_35_4_1",
    "pipa_35_4_2",
    "pipa_35_4_3",
    "pipa_36_1_proviso",
    "pipa_37_2_1",
    "pipa_37_2_2",
    "pipa_37_2_4",
    "record_not_found",
    "identity_not_verified",
    "policy_6_1",
    "policy_6_2",
    "policy_6_3",
]
Explanation = Annotated[str, Field(min_length=1, max_length=EXPLANATION_MAX)]
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class IdentifiersIn(BaseModel):
    """The subject's identifiers the request acts on (checked by the agent)."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)

    @model_validator(mode="after")
    def _at_least_one(self) -> IdentifiersIn:
        if not (self.phone or self.email):
            raise ValueError("Give the subject's phone or email.")
        return self


class NotifyIn(BaseModel):
    """Where notices go: the subject's own phone/e-mail (default) or a representative's."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "email"]
    destination: str | None = Field(
        default=None, max_length=254, description="omit to use the subject's identifier"
    )


class AgentVerification(BaseModel):
    """The agent verified the subject themselves."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["agent"]
    check: Literal["callback_to_number_on_record", "id_document_in_person", "knowledge_questions"]


class RepresentativeVerification(BaseModel):
    """A representative acts for the subject (PIPA Art. 38, Decree Art. 45) with checked proof."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["representative"]
    relation: Literal["legal_representative_of_child_under_14", "delegate"]
    document_kind: Literal[
        "family_relation_certificate",
        "power_of_attorney",
        "court_appointment",
        "other",
    ]
    representative_id_check: Literal["id_document_in_person", "id_document_copy"]
    document_ref: str | None = Field(
        default=None,
        max_length=100,
        pattern=r"^[A-Za-z0-9._:/-]+$",
        description="where the proof is filed (document store reference), never the document",
    )


class StaffRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: RequestCreate
    identifiers: IdentifiersIn
    intake_channel: Literal["phone", "counter"]
    verification: AgentVerification | RepresentativeVerification = Field(discriminator="method")
    notify: NotifyIn | None = None


class RefusedItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: str = Field(
        pattern=r"^[a-z_]{1,40}$", description="an item, category or purpose code of the request"
    )
    ground: GroundCode


class ApproveIn(BaseModel):
    """Approve all (no body, or ``{}``) or part: ``refused_items`` with an explanation (officer
    only)."""

    model_config = ConfigDict(extra="forbid")

    refused_items: list[RefusedItemIn] | None = Field(default=None, min_length=1, max_length=30)
    explanation: Explanation | None = None


class RefuseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ground: GroundCode
    explanation: Explanation


class ProposeRefusalIn(BaseModel):
    """Refuse the whole request (``ground``) or parts of it (``refused_items``)."""

    model_config = ConfigDict(extra="forbid")

    ground: GroundCode | None = None
    refused_items: list[RefusedItemIn] | None = Field(default=None, min_length=1, max_length=30)
    explanation: Explanation


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Explanation | None = Field(default=None, description="why the postponement ended")


class ExtendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Explanation
    new_due_at: Instant | date = Field(
        description="the new due day, as a date (2026-12-20) or a time with its offset; the "
        "deadline becomes the end of that day in Asia/Seoul",
        examples=["2026-12-20"],
    )

    @field_validator("new_due_at", mode="before")
    @classmethod
    def _date_or_aware_time(cls, value: Any) -> Any:
        # One message for every wrong form (a union would report one error per member).
        text = value.strip() if isinstance(value, str) else None
        try:
            if text is not None and _DATE.fullmatch(text):
                return date.fromisoformat(text)
            parsed = datetime.fromisoformat(text) if text is not None else value
        except ValueError:
            parsed = None
        if not isinstance(parsed, datetime) or parsed.tzinfo is None:
            raise ValueError(
                "Give a date (2026-12-20) or a time with its offset (2026-12-20T18:00:00+09:00)."
            )
        return parsed


class ObjectionDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["upheld", "dismissed"]
    explanation: Explanation


class QueueRow(RequestSummary):
    reference: str
    intake_channel: Literal["app", "web", "phone", "counter"]
    verification_method: Literal["otp", "agent", "representative"]
    scope: dict[str, list[str]]
    extensions: int
    proposal_pending: bool
    decision_result: Literal["approved", "partially_approved", "refused"] | None
    fulfilment_state: Literal["queued", "failed", "done"] | None
    assignee: str | None = Field(default=None, description="the owner's staff user id")
    assigned_at: datetime | None = None


class QueueCounts(BaseModel):
    """Open statuses, overdue, failed and open objections are exact. Closed statuses are exact
    while up to 100,000 requests are stored; beyond, they are estimates from the database's
    statistics (an exact count would read every stored request on every page)."""

    by_status: dict[RequestStatus, int]
    estimated: list[RequestStatus] = Field(
        default_factory=list, description="statuses whose count is an estimate"
    )
    overdue: int
    fulfilment_failed: int
    open_objections: int


class QueuePage(BaseModel):
    items: list[QueueRow]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")
    counts: QueueCounts


class IdentifierOut(BaseModel):
    kind: Literal["phone", "email"]
    masked: str


class ProposalOut(BaseModel):
    by: str
    role: str
    at: datetime
    ground: str | None
    refused_items: list[dict[str, str]]
    explanation: str | None


class FulfilmentOut(BaseModel):
    state: Literal["queued", "failed", "done"] | None
    attempts: int
    error: str | None


class HistoryEvent(BaseModel):
    at: datetime
    actor: str
    role: str
    action: str
    from_status: RequestStatus | None
    to_status: RequestStatus | None
    details: dict[str, Any]
    note: str | None


class StaffRequestDetail(QueueRow):
    locale: Literal["ko", "en"]
    original_due_at: datetime
    verification: dict[str, Any]
    notice_channel: Literal["sms", "email"]
    identifiers: list[IdentifierOut]
    body: dict[str, Any]
    decision: DecisionOut | None
    proposal: ProposalOut | None
    fulfilment: FulfilmentOut
    fulfilment_refusals: list[RefusalOut]
    result: dict[str, Any] | None
    completed_at: datetime | None
    withdrawn_at: datetime | None
    objection_until: datetime | None
    objections: list[ObjectionOut]
    history: list[HistoryEvent]
    processor_notices: list[ProcessorConfirmationPublic] = Field(
        default_factory=list,
        description="notices sent to processors for this request and which confirmed them",
    )
    notes: list[NoteOut] = Field(default_factory=list, description="internal notes, oldest first")


class StaffObjectionOut(BaseModel):
    id: uuid.UUID
    request_id: uuid.UUID
    status: Literal["open", "upheld", "dismissed"]
    submitted_at: datetime
    due_at: datetime
    overdue: bool
    decided_at: datetime | None


class StaffObjectionList(BaseModel):
    items: list[StaffObjectionOut]


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target_type: str | None
    target_id: str | None
    client_ip: str | None = Field(
        description="Keyed hash (HMAC-SHA256) of the caller's address: equal addresses, equal "
        "hashes; the address itself is not stored in clear"
    )
    client_address: str | None = Field(
        default=None,
        description="The address of a staff member, partner or service (access records), shown "
        "to the privacy officer only; the read is audited. Never kept for data subjects",
    )
    details: dict[str, Any]
    seq: int | None = Field(description="position in the hash chain; null until sealed")
    prev_hash: str | None
    hash: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None
