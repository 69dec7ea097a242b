"""The access report (PIPA Art. 35, Enforcement Decree Art. 41(1)) as JSON.

Five sections: the items held (per category and role, with values), the purposes, the retention
period and legal basis per item, provision to third parties (processors), and consents held.
Items withheld under Art. 35(4) appear in no section and are listed with their ground (Decree Art.
42(1)); records kept apart under another law are listed with the law and the date. Labels come
in Korean and English.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LocalizedText(BaseModel):
    ko: str
    en: str


class ReportValue(BaseModel):
    value: str
    records: int = Field(description="how many records hold this value")


class ReportOrigin(BaseModel):
    """Where records came from (PIPA Art. 20): the subject, the sender, or a named controller."""

    origin: Literal["subject", "sender", "controller"]
    controller: str | None = Field(default=None, description="the supplying controller's code")
    label: LocalizedText = Field(examples=[{"ko": "G마켓이(가) 제공", "en": "Provided by Gmarket"}])
    records: int


class ReportItem(BaseModel):
    """One item held about the subject in one collection and role (section 1)."""

    category: str = Field(examples=["contact"])
    category_label: LocalizedText
    item: str = Field(examples=["phone"])
    item_label: LocalizedText
    role: str = Field(examples=["sender"])
    role_label: LocalizedText
    collection: str = Field(examples=["deliveries"])
    collection_label: LocalizedText
    records: int
    values: list[ReportValue] = Field(
        description="distinct values, most frequent first; empty when withheld"
    )
    values_omitted: int = Field(
        default=0, description="records whose value is not listed (beyond the per-item limit)"
    )
    withheld: bool = False
    origins: list[ReportOrigin] = Field(
        default_factory=list, description="where this record group came from (PIPA Art. 20)"
    )


class ReportPurpose(BaseModel):
    """Why the items are processed (section 2)."""

    purpose: str = Field(examples=["delivery"])
    label: LocalizedText
    optional: bool = Field(description="processed only with the subject's optional consent")
    items: list[str]
    collections: list[str]


class ReportRetention(BaseModel):
    """How long an item is kept and on what legal basis (section 3)."""

    collection: str
    collection_label: LocalizedText
    item: str
    item_label: LocalizedText
    rule: str = Field(examples=["contracts"])
    period: str | None = Field(description="'5y', '3m'...; null: until the purpose is achieved")
    period_label: LocalizedText
    legal_basis: LocalizedText
    description: LocalizedText | None = None
    retained_until: datetime | None = Field(
        default=None, description="when the most recent record's period ends"
    )
    records: int


class ReportProvision(BaseModel):
    """A processor that received the subject's items (section 4)."""

    processor: str = Field(examples=["hct"])
    name: str
    nation: str | None = None
    items: list[str]
    item_labels: list[LocalizedText]
    collections: list[str]
    records: int
    first_provided_at: datetime | None = None
    last_provided_at: datetime | None = None


class ReportConsent(BaseModel):
    """An optional consent on record (section 5)."""

    collection: str
    collection_label: LocalizedText
    purpose: str
    purpose_label: LocalizedText
    given: bool
    records: int
    last_changed_at: datetime | None = None


class ReportWithheld(BaseModel):
    """An item not shown, with its ground under PIPA Art. 35(4) (Decree Art. 42(1))."""

    collection: str
    collection_label: LocalizedText
    role: str
    role_label: LocalizedText
    item: str
    item_label: LocalizedText
    ground: str = Field(examples=["art35_4_2"])
    ground_label: LocalizedText
    explanation: LocalizedText | None = None


class ReportRetained(BaseModel):
    """Items kept apart under another law after a deletion (PIPA Art. 21(3)): still held.

    Only the item names and dates: the sealed copy is not opened to make the report.
    """

    collection: str
    collection_label: LocalizedText
    role: str | None = None
    items: list[str]
    item_labels: list[LocalizedText]
    records: int
    rule: str = Field(examples=["contracts"])
    legal_basis: LocalizedText
    kept_until: datetime = Field(description="destroyed (its data key shredded) after this")
    purpose: LocalizedText = Field(description="why it is kept: the legal retention only")
    provided_to_third_parties: bool = Field(
        default=False, description="a separately kept copy is provided to no one"
    )


class ReportSource(BaseModel):
    name: str
    connector: Literal["postgres", "http"]
    records: int


class ReportSubject(BaseModel):
    identifiers: list[str] = Field(description="the verified identifiers, masked")


class AccessReport(BaseModel):
    """Everything the service holds about one data subject, as PIPA Art. 35 requires."""

    report_version: Literal[1] = 1
    request_id: uuid.UUID
    generated_at: datetime
    expires_at: datetime | None = Field(
        default=None, description="after this the report can no longer be downloaded"
    )
    complete: bool = Field(
        default=True, description="every source answered (a partial report is never stored)"
    )
    subject: ReportSubject
    items: list[ReportItem]
    purposes: list[ReportPurpose]
    retention: list[ReportRetention]
    third_parties: list[ReportProvision]
    consents: list[ReportConsent]
    withheld: list[ReportWithheld]
    retained: list[ReportRetained] = Field(
        default_factory=list, description="kept separately under another law until a date"
    )
    sources: list[ReportSource]


class ReportHandoverIn(BaseModel):
    """How a privacy officer gave the report to a representative or a support-center requester."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["counter", "post", "email"]
    note: str | None = Field(
        default=None, max_length=500, description="e.g. the registered-post number"
    )


class ReportHandoverOut(BaseModel):
    request_id: uuid.UUID
    method: Literal["counter", "post", "email"]
    handed_over_at: datetime
