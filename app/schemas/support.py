"""Bodies of the support console's API: ownership, bulk actions, SLA, statistics."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.requests import RequestStatus, RequestType
from app.schemas.staff import QueueRow

StaffUser = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@:-]+$")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str = StaffUser


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["take", "assign", "withdraw_spam"]
    ids: list[uuid.UUID] = Field(min_length=1, max_length=100)
    assignee: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@:-]+$"
    )


class BulkResultOut(BaseModel):
    id: uuid.UUID
    ok: bool
    code: str | None = Field(description="the problem code when not ok")
    status: RequestStatus | None
    assignee: str | None


class BulkOut(BaseModel):
    items: list[BulkResultOut]


class SlaCounts(BaseModel):
    overdue: int
    due_today: int
    due_soon: int
    postponed: int
    awaiting_acknowledgement: int


class SlaOut(BaseModel):
    within_days: int
    counts: SlaCounts
    overdue: list[QueueRow]
    due_today: list[QueueRow]
    due_soon: list[QueueRow] = Field(description="open, not overdue, due within N days")
    postponed: list[QueueRow]
    awaiting_acknowledgement: list[QueueRow] = Field(
        description="a processor has not confirmed a delivered notice"
    )


class ObjectionCounts(BaseModel):
    total: int
    open: int
    upheld: int
    dismissed: int


class StatisticsOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    total: int
    by_type: dict[RequestType, int]
    by_channel: dict[Literal["app", "phone", "counter"], int]
    by_outcome: dict[RequestStatus, int]
    completed: int
    median_days_to_complete: float | None
    p90_days_to_complete: float | None
    answered: int = Field(description="completed, partially completed or refused")
    answered_on_time: int
    overdue_unanswered: int = Field(description="still open past the due date (late already)")
    share_on_time: float | None = Field(
        description="answered_on_time / (answered + overdue_unanswered); null when both are 0"
    )
    objections: ObjectionCounts
