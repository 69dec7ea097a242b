"""Access reports (PIPA Art. 35, Decree Art. 41(1)): generate, seal, store, load, render, purge.

Generation streams every collection of the data map through its connector and folds each record
into per-item aggregates (distinct values with counts, retention clocks, processors, consents),
so memory depends on how many *distinct* values a subject has, not on how many records.
Only the subject's own role fields are read, so another person's data in the same record
(the sender's phone on a delivery the subject received) never reaches the report.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import jinja2
import phonenumbers
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.errors import Gone, NotFound
from app.models import AccessReportRecord
from app.schemas.reports import (
    AccessReport,
    LocalizedText,
    ReportConsent,
    ReportItem,
    ReportProvision,
    ReportPurpose,
    ReportRetention,
    ReportSource,
    ReportSubject,
    ReportValue,
    ReportWithheld,
)
from app.services.connectors import Connectors, SubjectRecord
from app.services.crypto import Crypto
from app.services.datamap import (
    CATEGORIES,
    PURPOSES,
    ROLES,
    WITHHOLDING_GROUNDS,
    CollectionSpec,
    FieldSpec,
    HttpSource,
    SubjectIdentifiers,
    Text,
    Withhold,
)

KST = timezone(timedelta(hours=9), "KST")
DEFAULT_MAX_VALUES = 5000


@dataclass(frozen=True)
class Withholding:
    """Withhold matching items from one report under PIPA Art. 35(4) (a decision for this
    request, on top of what the data map withholds). None matches anything."""

    ground: str
    item: str | None = None
    collection: str | None = None
    role: str | None = None
    explanation: Text | None = None

    def __post_init__(self) -> None:
        if self.ground not in WITHHOLDING_GROUNDS:
            raise ValueError(f"unknown withholding ground {self.ground!r}")

    def matches(self, collection: str, role: str, item: str) -> bool:
        return (
            (self.item is None or self.item == item)
            and (self.collection is None or self.collection == collection)
            and (self.role is None or self.role == role)
        )

    def as_payload(self) -> dict[str, Any]:
        return {
            "ground": self.ground,
            "item": self.item,
            "collection": self.collection,
            "role": self.role,
            "explanation": self.explanation.model_dump() if self.explanation else None,
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Withholding:
        explanation = data.get("explanation")
        return cls(
            ground=data["ground"],
            item=data.get("item"),
            collection=data.get("collection"),
            role=data.get("role"),
            explanation=Text(**explanation) if explanation else None,
        )


def _lt(text: Text) -> LocalizedText:
    return LocalizedText(ko=text.ko, en=text.en)


def _role_label(spec: CollectionSpec, role: str) -> Text:
    return spec.roles[role].label or ROLES.get(role) or Text(ko=role, en=role)


def _as_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(KST).isoformat(timespec="seconds")
    return str(value)


# --- Aggregation -----------------------------------------------------------------------------


@dataclass
class _ItemAgg:
    spec: CollectionSpec
    role: str
    fspec: FieldSpec
    withhold: Withhold | Withholding | None
    max_values: int
    records: int = 0
    values: dict[str, int] = field(default_factory=dict)
    omitted: int = 0

    def add(self, value: Any) -> None:
        self.records += 1
        if self.withhold is not None:
            return
        text = value if isinstance(value, str) else _as_text(value)
        values = self.values
        if text in values:
            values[text] += 1
        elif len(values) < self.max_values:
            values[text] = 1
        else:
            self.omitted += 1


@dataclass
class _RetentionAgg:
    records: int = 0
    latest_start: datetime | None = None


@dataclass
class _ProvisionAgg:
    items: set[str] = field(default_factory=set)
    collections: set[str] = field(default_factory=set)
    records: int = 0
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class _ConsentAgg:
    records: int = 0
    last_changed: datetime | None = None


class _ReportBuilder:
    """Folds streamed records into the five sections."""

    def __init__(
        self, connectors: Connectors, withheld: Sequence[Withholding], max_values: int
    ) -> None:
        self.datamap = connectors.datamap
        self.withheld = list(withheld)
        self.max_values = max_values
        self.items: dict[tuple[str, str, str], _ItemAgg] = {}
        self.plans: dict[tuple[str, str], list[_ItemAgg]] = {}
        self.retention: dict[tuple[str, str], _RetentionAgg] = {}
        self.provisions: dict[str, _ProvisionAgg] = {}
        self.provided_items: dict[tuple[str, str, tuple[str, ...] | None], list[str]] = {}
        self.consents: dict[tuple[str, bool], _ConsentAgg] = {}
        self.sources: dict[str, int] = {}

    def _withhold_for(
        self, spec: CollectionSpec, role: str, field_spec: FieldSpec
    ) -> Withhold | Withholding | None:
        for rule in self.withheld:
            if rule.matches(spec.name, role, field_spec.item):
                return rule
        return field_spec.withhold

    def _plan(self, spec: CollectionSpec, role: str) -> list[_ItemAgg]:
        key = (spec.name, role)
        plan = self.plans.get(key)
        if plan is None:
            plan = []
            for field_spec in spec.roles[role].fields:
                agg = _ItemAgg(
                    spec,
                    role,
                    field_spec,
                    self._withhold_for(spec, role, field_spec),
                    self.max_values,
                )
                self.items[(spec.name, role, field_spec.column)] = agg
                plan.append(agg)
            self.plans[key] = plan
        return plan

    def _provided(
        self, spec: CollectionSpec, role: str, limit: tuple[str, ...] | None
    ) -> list[str]:
        key = (spec.name, role, limit)
        items = self.provided_items.get(key)
        if items is None:
            items = [
                f.item
                for f in spec.roles[role].fields
                if f.provided and (limit is None or f.item in limit)
            ]
            self.provided_items[key] = items
        return items

    def add(self, spec: CollectionSpec, record: SubjectRecord) -> None:
        """Fold one record in (the hot path: ~100k calls for a large subject)."""
        role = record.role
        fields = record.fields
        held = False
        plan = self.plans.get((spec.name, role)) or self._plan(spec, role)
        for agg in plan:
            value = fields.get(agg.fspec.column)
            if value is not None and value != "":
                agg.add(value)
                held = True
        self.sources[spec.source] = self.sources.get(spec.source, 0) + 1
        if not held:
            return  # every field of this role is empty (erased): nothing held here
        key = (spec.name, role)
        retention = self.retention.get(key)
        if retention is None:
            retention = self.retention[key] = _RetentionAgg()
        retention.records += 1
        start = record.retention_start
        if start is not None and (retention.latest_start is None or start > retention.latest_start):
            retention.latest_start = start
        for handover in record.handovers:
            provision = self.provisions.get(handover.processor)
            if provision is None:
                provision = self.provisions[handover.processor] = _ProvisionAgg()
            if provision.records == 0 or spec.name not in provision.collections:
                provision.collections.add(spec.name)
            provided = self._provided(spec, role, handover.items)
            if not provision.items.issuperset(provided):
                provision.items.update(provided)
            provision.records += 1
            at = handover.at
            if at is not None:
                if provision.first is None or at < provision.first:
                    provision.first = at
                if provision.last is None or at > provision.last:
                    provision.last = at
        if record.consent is not None and spec.consent is not None:
            ckey = (spec.name, record.consent)
            consent = self.consents.get(ckey)
            if consent is None:
                consent = self.consents[ckey] = _ConsentAgg()
            consent.records += 1
            changed = record.consent_at
            if changed is not None and (
                consent.last_changed is None or changed > consent.last_changed
            ):
                consent.last_changed = changed

    def build(
        self, *, request_id: uuid.UUID, subject: SubjectIdentifiers, now: datetime
    ) -> AccessReport:
        held = [agg for agg in self.items.values() if agg.records > 0]
        return AccessReport(
            request_id=request_id,
            generated_at=now,
            subject=ReportSubject(identifiers=mask_identifiers(subject)),
            items=self._items(held),
            purposes=self._purposes(held),
            retention=self._retention(held),
            third_parties=self._third_parties(),
            consents=self._consents(),
            withheld=self._withheld(held),
            sources=[
                ReportSource(
                    name=name,
                    connector="http" if isinstance(source, HttpSource) else "postgres",
                    records=self.sources.get(name, 0),
                )
                for name, source in sorted(self.datamap.sources.items())
            ],
        )

    def _order(self, agg: _ItemAgg) -> tuple[int, int, int]:
        collections = self.datamap.collections
        spec_index = collections.index(agg.spec)
        roles = list(agg.spec.roles)
        fields = agg.spec.roles[agg.role].fields
        return spec_index, roles.index(agg.role), fields.index(agg.fspec)

    def _items(self, held: list[_ItemAgg]) -> list[ReportItem]:
        out = []
        for agg in sorted(held, key=lambda a: (a.fspec.effective_category, self._order(a))):
            category = agg.fspec.effective_category
            values = sorted(agg.values.items(), key=lambda kv: (-kv[1], kv[0]))
            out.append(
                ReportItem(
                    category=category,
                    category_label=_lt(CATEGORIES[category]),
                    item=agg.fspec.item,
                    item_label=_lt(agg.fspec.item_label),
                    role=agg.role,
                    role_label=_lt(_role_label(agg.spec, agg.role)),
                    collection=agg.spec.name,
                    collection_label=_lt(agg.spec.label),
                    records=agg.records,
                    values=[ReportValue(value=v, records=n) for v, n in values],
                    values_omitted=agg.omitted,
                    withheld=agg.withhold is not None,
                )
            )
        return out

    def _purposes(self, held: list[_ItemAgg]) -> list[ReportPurpose]:
        found: dict[str, tuple[set[str], set[str], bool]] = {}
        for agg in held:
            for purpose in agg.spec.field_purposes(agg.fspec):
                items, collections, optional = found.get(purpose, (set(), set(), False))
                items.add(agg.fspec.item)
                collections.add(agg.spec.name)
                found[purpose] = (items, collections, optional or agg.spec.optional)
        order = list(PURPOSES)
        return [
            ReportPurpose(
                purpose=purpose,
                label=_lt(PURPOSES[purpose]),
                optional=optional,
                items=sorted(items),
                collections=sorted(collections),
            )
            for purpose, (items, collections, optional) in sorted(
                found.items(), key=lambda kv: order.index(kv[0])
            )
        ]

    def _retention(self, held: list[_ItemAgg]) -> list[ReportRetention]:
        rows: dict[tuple[str, str], ReportRetention] = {}
        for agg in sorted(held, key=self._order):
            spec = agg.spec
            rule = self.datamap.rule(spec.retention.rule)
            clock = self.retention.get((spec.name, agg.role), _RetentionAgg())
            until = rule.retain_until(clock.latest_start) if clock.latest_start else None
            key = (spec.name, agg.fspec.item)
            current = rows.get(key)
            if current is not None:
                current.records += agg.records
                if until and (current.retained_until is None or until > current.retained_until):
                    current.retained_until = until
                continue
            rows[key] = ReportRetention(
                collection=spec.name,
                collection_label=_lt(spec.label),
                item=agg.fspec.item,
                item_label=_lt(agg.fspec.item_label),
                rule=spec.retention.rule,
                period=rule.period,
                period_label=LocalizedText(ko=rule.period_label("ko"), en=rule.period_label("en")),
                legal_basis=_lt(rule.legal_basis),
                description=_lt(rule.description) if rule.description else None,
                retained_until=until,
                records=agg.records,
            )
        return list(rows.values())

    def _third_parties(self) -> list[ReportProvision]:
        out = []
        for code, agg in sorted(self.provisions.items()):
            info = self.datamap.processor(code)
            items = sorted(agg.items)
            labels = []
            for item in items:
                label = self._item_label(item)
                labels.append(_lt(label))
            out.append(
                ReportProvision(
                    processor=code,
                    name=info.name if info else code,
                    nation=info.nation if info else None,
                    items=items,
                    item_labels=labels,
                    collections=sorted(agg.collections),
                    records=agg.records,
                    first_provided_at=agg.first,
                    last_provided_at=agg.last,
                )
            )
        return out

    def _item_label(self, item: str) -> Text:
        for agg in self.items.values():
            if agg.fspec.item == item:
                return agg.fspec.item_label
        return Text(ko=item, en=item)

    def _consents(self) -> list[ReportConsent]:
        out = []
        for (name, given), agg in sorted(
            self.consents.items(), key=lambda kv: (kv[0][0], not kv[0][1])
        ):
            spec = self.datamap.collection(name)
            assert spec.consent is not None
            out.append(
                ReportConsent(
                    collection=name,
                    collection_label=_lt(spec.label),
                    purpose=spec.consent.purpose,
                    purpose_label=_lt(PURPOSES[spec.consent.purpose]),
                    given=given,
                    records=agg.records,
                    last_changed_at=agg.last_changed,
                )
            )
        return out

    def _withheld(self, held: list[_ItemAgg]) -> list[ReportWithheld]:
        out = []
        for agg in sorted(held, key=self._order):
            rule = agg.withhold
            if rule is None:
                continue
            out.append(
                ReportWithheld(
                    collection=agg.spec.name,
                    collection_label=_lt(agg.spec.label),
                    role=agg.role,
                    role_label=_lt(_role_label(agg.spec, agg.role)),
                    item=agg.fspec.item,
                    item_label=_lt(agg.fspec.item_label),
                    ground=rule.ground,
                    ground_label=_lt(WITHHOLDING_GROUNDS[rule.ground]),
                    explanation=_lt(rule.explanation) if rule.explanation else None,
                )
            )
        return out


def mask_identifiers(subject: SubjectIdentifiers) -> list[str]:
    """010-****-0001, d***@example.com: enough for the subject to recognise, no more."""
    out = []
    if subject.phone:
        number = phonenumbers.parse(subject.phone)
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        parts = national.split("-")
        if len(parts) == 3:
            out.append(f"{parts[0]}-{'*' * len(parts[1])}-{parts[2]}")
        else:
            out.append(subject.phone[:4] + "*" * (len(subject.phone) - 8) + subject.phone[-4:])
    if subject.email:
        local, _, domain = subject.email.partition("@")
        out.append(f"{local[:1]}{'*' * max(3, len(local) - 1)}@{domain}")
    return out


async def generate_access_report(
    connectors: Connectors,
    *,
    request_id: uuid.UUID,
    subject: SubjectIdentifiers,
    now: datetime,
    withheld: Sequence[Withholding] = (),
    max_values_per_item: int = DEFAULT_MAX_VALUES,
) -> AccessReport:
    """Read every collection in the data map for the subject and build the five sections.

    Raises SourceError (SourceUnavailable / SourceRejected) if any source fails: a report is
    complete or it is not made.
    """
    builder = _ReportBuilder(connectors, withheld, max_values_per_item)
    for spec in connectors.datamap.collections:
        connector = connectors.for_collection(spec)
        async for record in connector.export(spec, subject=subject):
            builder.add(spec, record)
    return builder.build(request_id=request_id, subject=subject, now=now)


# --- Storage ---------------------------------------------------------------------------------


def _context(request_id: uuid.UUID) -> str:
    return f"access_report:{request_id}"


def seal_report(crypto: Crypto, report: AccessReport) -> bytes:
    return crypto.encrypt(
        zlib.compress(report.model_dump_json().encode(), 6), context=_context(report.request_id)
    )


def open_report(crypto: Crypto, request_id: uuid.UUID, sealed: bytes) -> AccessReport:
    raw = zlib.decompress(crypto.decrypt(sealed, context=_context(request_id)))
    return AccessReport.model_validate_json(raw)


async def store_access_report(
    session: AsyncSession,
    *,
    crypto: Crypto,
    report: AccessReport,
    subject_blind_index: str,
    now: datetime,
    ttl: timedelta,
) -> AccessReport:
    """Seal and keep the report until now + ttl (a re-run for the same request replaces it)."""
    stored = report.model_copy(update={"expires_at": now + ttl})
    values = {
        "id": uuid.uuid4(),
        "request_id": report.request_id,
        "subject_blind_index": subject_blind_index,
        "created_at": now,
        "expires_at": now + ttl,
        "purged_at": None,
        "content": seal_report(crypto, stored),
    }
    statement = insert(AccessReportRecord).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["request_id"],
        set_={k: statement.excluded[k] for k in values if k not in ("id", "request_id")},
    )
    await session.execute(statement)
    await session.flush()
    return stored


async def load_access_report(
    session: AsyncSession,
    *,
    crypto: Crypto,
    request_id: uuid.UUID,
    subject: str | None,
    now: datetime,
) -> AccessReport:
    """The stored report; ``subject`` (a blind index) must own it unless None (staff).

    NotFound when there is none (or it is someone else's), Gone once it has expired.
    """
    row = (
        await session.exec(
            select(AccessReportRecord).where(col(AccessReportRecord.request_id) == request_id)
        )
    ).one_or_none()
    if row is None or (subject is not None and not Crypto.equal(row.subject_blind_index, subject)):
        raise NotFound("There is no access report for this request.")
    if row.content is None or row.expires_at <= now:
        raise Gone("The access report has expired; submit a new access request.")
    return open_report(crypto, request_id, row.content)


async def purge_expired_access_reports(session: AsyncSession, *, now: datetime) -> int:
    """Destroy the content of expired reports (the row stays as a tombstone); returns how many."""
    result = await session.execute(
        sa.update(AccessReportRecord)
        .where(
            col(AccessReportRecord.expires_at) <= now,
            col(AccessReportRecord.content).is_not(None),
        )
        .values(content=None, purged_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- HTML ------------------------------------------------------------------------------------

TEXTS: dict[str, dict[str, str]] = {
    "ko": {
        "title": "개인정보 열람 결과",
        "intro": "「개인정보 보호법」 제35조 및 같은 법 시행령 제41조에 따라 회사가 보유한 "
        "귀하의 개인정보를 알려 드립니다. 같은 기록에 담긴 다른 사람의 정보는 표시하지 않습니다.",
        "subject": "본인 확인 정보",
        "generated": "작성 일시",
        "expires": "열람 가능 기한",
        "items": "1. 보유 중인 개인정보 항목",
        "purposes": "2. 개인정보의 처리 목적",
        "retention": "3. 보유 기간 및 근거",
        "third_parties": "4. 제3자 제공 및 처리위탁 현황",
        "consents": "5. 동의 현황",
        "withheld": "열람이 제한된 항목",
        "category": "분류",
        "item": "항목",
        "role": "구분",
        "collection": "기록",
        "values": "내용",
        "records": "건수",
        "withheld_value": "열람 제한",
        "omitted": "외 {n}건은 목록에 표시하지 않았습니다.",
        "purpose": "목적",
        "optional": "선택",
        "required": "필수",
        "period": "보유 기간",
        "basis": "근거",
        "until": "보유 종료 예정",
        "processor": "받는 자",
        "nation": "국가",
        "provided": "제공 일시",
        "ground": "제한 사유",
        "explanation": "설명",
        "given": "동의함",
        "not_given": "동의하지 않음",
        "status": "상태",
        "changed": "변경 일시",
        "none": "해당 없음",
        "objection": "이 결과에 이의가 있으시면 앱의 요청 내역에서 이의를 제기하시거나 "
        "고객지원센터(02-2620-1100)로 연락해 주십시오.",
    },
    "en": {
        "title": "Access to your personal information",
        "intro": "Under Article 35 of the Personal Information Protection Act and Article 41 of "
        "its Enforcement Decree, this is the personal information we hold about you. Other "
        "people's information in the same records is not shown.",
        "subject": "Verified identifiers",
        "generated": "Generated",
        "expires": "Available until",
        "items": "1. Personal information we hold",
        "purposes": "2. Purposes of processing",
        "retention": "3. Retention period and legal basis",
        "third_parties": "4. Provision to third parties and processors",
        "consents": "5. Consents",
        "withheld": "Items withheld",
        "category": "Category",
        "item": "Item",
        "role": "As",
        "collection": "Record",
        "values": "Values",
        "records": "Records",
        "withheld_value": "Withheld",
        "omitted": "{n} more records are not listed.",
        "purpose": "Purpose",
        "optional": "Optional",
        "required": "Required",
        "period": "Period",
        "basis": "Legal basis",
        "until": "Kept until",
        "processor": "Recipient",
        "nation": "Nation",
        "provided": "Provided",
        "ground": "Ground",
        "explanation": "Explanation",
        "given": "Given",
        "not_given": "Not given",
        "status": "Status",
        "changed": "Changed",
        "none": "None",
        "objection": "If you disagree with this result, object from your request in the app "
        "or call the Customer Support Center (+82-2-2620-1100).",
    },
}


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("app", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["kst"] = lambda value: (
        value.astimezone(KST).strftime("%Y-%m-%d %H:%M") if value else ""
    )
    env.filters["kst_date"] = lambda value: (
        value.astimezone(KST).strftime("%Y-%m-%d") if value else ""
    )
    return env


def render_access_report_html(report: AccessReport, *, lang: str = "ko") -> str:
    """The report as a self-contained, autoescaped page (Korean unless lang='en')."""
    lang = "en" if lang == "en" else "ko"
    template = _templates().get_template("access_report.html")
    return template.render(report=report, lang=lang, t=TEXTS[lang])
