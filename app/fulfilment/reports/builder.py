"""Access reports (PIPA Art. 35, Decree Art. 41(1)): built from the data map, by section.

Generation streams every collection of the data map through its connector and folds each record
into per-item aggregates (distinct values with counts, retention clocks, processors, consents),
so memory depends on how many *distinct* values a subject has, not on how many records.
Only the subject's own role fields are read, so another person's data in the same record
(the sender's phone on a delivery the subject received) never reaches the report. A withheld
item (PIPA Art. 35(4): the data map's ``withhold`` or the reviewer's decision) is in no section,
only in ``withheld`` with its ground (Decree Art. 42(1)). Records kept apart under another law
are listed in ``retained`` from their summaries (item names and dates; the sealed copies stay
closed).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import phonenumbers

from app.datamap.connectors import Connectors
from app.datamap.connectors.base import RecordBatch
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.schema import CollectionSpec, FieldSpec, HttpSource, Withhold
from app.fulfilment.reports.columns import (
    ConsentTally,
    ItemTally,
    ProvisionTally,
    RetentionTally,
    count_values,
    latest,
    spans,
)
from app.fulfilment.reports.withholding import Withholding
from app.retention.store import RetainedSummary
from app.schemas.reports import (
    AccessReport,
    LocalizedText,
    ReportConsent,
    ReportItem,
    ReportOrigin,
    ReportProvision,
    ReportPurpose,
    ReportRetained,
    ReportRetention,
    ReportSource,
    ReportSubject,
    ReportValue,
    ReportWithheld,
)
from app.vocabulary import (
    CATEGORIES,
    GROUNDS,
    ITEMS,
    OPTIONAL_PURPOSES,
    ORIGINS,
    PURPOSES,
    ROLES,
    WITHHOLDING_GROUNDS,
    Text,
)

DEFAULT_MAX_VALUES = 5000
RETAINED_PURPOSE = Text(
    ko="법령에 따른 보존(다른 목적으로 이용하거나 제공하지 않음)",
    en="Retention required by law only (not used or provided for any other purpose)",
)


def _lt(text: Text) -> LocalizedText:
    return LocalizedText(ko=text.ko, en=text.en)


def _ground_label(code: str) -> LocalizedText:
    if code in WITHHOLDING_GROUNDS:
        return _lt(WITHHOLDING_GROUNDS[code])
    ground = GROUNDS[code]
    return LocalizedText(
        ko=f"{ground.ko}({ground.source_ko})", en=f"{ground.en} ({ground.source_en})"
    )


def _role_label(spec: CollectionSpec, role: str) -> Text:
    return spec.roles[role].label or ROLES.get(role) or Text(ko=role, en=role)


class _ReportBuilder:
    """Folds streamed records into the five sections."""

    def __init__(
        self, connectors: Connectors, withheld: Sequence[Withholding], max_values: int
    ) -> None:
        self.datamap = connectors.datamap
        self.withheld = list(withheld)
        self.max_values = max_values
        self.items: dict[tuple[str, str, str], ItemTally] = {}
        self.plans: dict[tuple[str, str], list[ItemTally]] = {}
        self.retention: dict[tuple[str, str], RetentionTally] = {}
        self.provisions: dict[str, ProvisionTally] = {}
        self.provided_items: dict[tuple[str, str, tuple[str, ...] | None], list[str]] = {}
        self.consents: dict[tuple[str, bool], ConsentTally] = {}
        self.sources: dict[str, int] = {}
        # (collection, role) → the record's supplier ("" when the map's default origin) → count
        self.origins: dict[tuple[str, str], dict[str, int]] = {}

    def _withhold_for(
        self, spec: CollectionSpec, role: str, field_spec: FieldSpec
    ) -> Withhold | Withholding | None:
        for rule in self.withheld:
            if rule.matches(spec.name, role, field_spec.item):
                return rule
        return field_spec.withhold

    def _plan(self, spec: CollectionSpec, role: str) -> list[ItemTally]:
        key = (spec.name, role)
        plan = self.plans.get(key)
        if plan is None:
            plan = []
            for field_spec in spec.roles[role].fields:
                agg = ItemTally(
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
                if f.provided
                and (limit is None or f.item in limit)
                and self._withhold_for(spec, role, f) is None
            ]
            self.provided_items[key] = items
        return items

    def add_batch(self, spec: CollectionSpec, batch: RecordBatch) -> None:
        """Fold a batch of records in (the hot path: 100,000 records are 50 batches).

        Column by column with C-level counting (``Counter`` over ``itemgetter``), so the cost per
        record is a few dictionary updates, not an object and a dozen calls.
        """
        rows = batch.rows
        if not rows:
            return
        role = batch.role
        layout = batch.layout
        self.sources[spec.source] = self.sources.get(spec.source, 0) + len(rows)
        plan = self.plans.get((spec.name, role)) or self._plan(spec, role)
        set_in_every_row = False
        for agg, index in zip(plan, layout.fields, strict=True):
            counts = count_values(rows, index)
            empty = counts.pop(None, 0) + counts.pop("", 0)
            set_in_every_row = set_in_every_row or empty == 0
            agg.add_counts(counts)
        if set_in_every_row:
            held = rows
        else:  # some records have every field of this role empty (erased): nothing held there
            fields = layout.fields
            held = [row for row in rows if any(row[i] is not None and row[i] != "" for i in fields)]
            if not held:
                return
        key = (spec.name, role)
        origins = self.origins.setdefault(key, {})
        for supplier, records in count_values(held, layout.supplier).items():
            name = "" if supplier is None else str(supplier)
            origins[name] = origins.get(name, 0) + records
        retention = self.retention.get(key)
        if retention is None:
            retention = self.retention[key] = RetentionTally()
        retention.records += len(held)
        start = latest(held, layout.retention_start)
        if start is not None and (retention.latest_start is None or start > retention.latest_start):
            retention.latest_start = start
        for code_index, at_index, items in layout.handovers:
            for code, (records, first, last) in spans(held, code_index, at_index).items():
                provision = self.provisions.get(str(code))
                if provision is None:
                    provision = self.provisions[str(code)] = ProvisionTally()
                provision.collections.add(spec.name)
                provided = self._provided(spec, role, items)
                if not provision.items.issuperset(provided):
                    provision.items.update(provided)
                provision.records += records
                if first is not None and (provision.first is None or first < provision.first):
                    provision.first = first
                if last is not None and (provision.last is None or last > provision.last):
                    provision.last = last
        if spec.consent is not None:
            for given, (records, _, changed) in spans(
                held, layout.consent, layout.consent_at
            ).items():
                consent = self.consents.get((spec.name, bool(given)))
                if consent is None:
                    consent = self.consents[(spec.name, bool(given))] = ConsentTally()
                consent.records += records
                if changed is not None and (
                    consent.last_changed is None or changed > consent.last_changed
                ):
                    consent.last_changed = changed

    def build(
        self,
        *,
        request_id: uuid.UUID,
        subject: SubjectIdentifiers,
        now: datetime,
        retained: Sequence[RetainedSummary] = (),
    ) -> AccessReport:
        found = [agg for agg in self.items.values() if agg.records > 0]
        held = [agg for agg in found if agg.withhold is None]
        return AccessReport(
            request_id=request_id,
            generated_at=now,
            subject=ReportSubject(identifiers=mask_identifiers(subject)),
            items=self._items(held),
            purposes=self._purposes(held),
            retention=self._retention(held),
            third_parties=self._third_parties(),
            consents=self._consents(),
            withheld=self._withheld(found),
            retained=self._retained(retained),
            sources=[
                ReportSource(
                    name=name,
                    connector="http" if isinstance(source, HttpSource) else "postgres",
                    records=self.sources.get(name, 0),
                )
                for name, source in sorted(self.datamap.sources.items())
            ],
        )

    def _order(self, agg: ItemTally) -> tuple[int, int, int]:
        collections = self.datamap.collections
        spec_index = collections.index(agg.spec)
        roles = list(agg.spec.roles)
        fields = agg.spec.roles[agg.role].fields
        return spec_index, roles.index(agg.role), fields.index(agg.fspec)

    def _items(self, held: list[ItemTally]) -> list[ReportItem]:
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
                    origins=self._origins(agg.spec, agg.role),
                )
            )
        return out

    def _origins(self, spec: CollectionSpec, role: str) -> list[ReportOrigin]:
        out = []
        for supplier, records in sorted(self.origins.get((spec.name, role), {}).items()):
            origin, controller = spec.record_origin(role, supplier or None)
            label = ORIGINS[origin]
            if controller is not None:
                info = self.datamap.controller(controller)
                name = info.name if info else controller
                label = Text(ko=label.ko.format(name=name), en=label.en.format(name=name))
            out.append(
                ReportOrigin(
                    origin=origin,
                    controller=controller,
                    label=_lt(label),
                    records=records,
                )
            )
        return out

    def _purposes(self, held: list[ItemTally]) -> list[ReportPurpose]:
        found: dict[str, tuple[set[str], set[str], bool]] = {}
        for agg in held:
            for purpose in agg.spec.field_purposes(agg.fspec):
                items, collections, optional = found.get(purpose, (set(), set(), False))
                items.add(agg.fspec.item)
                collections.add(agg.spec.name)
                found[purpose] = (
                    items,
                    collections,
                    optional or agg.spec.optional or purpose in OPTIONAL_PURPOSES,
                )
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

    def _retention(self, held: list[ItemTally]) -> list[ReportRetention]:
        rows: dict[tuple[str, str], ReportRetention] = {}
        for agg in sorted(held, key=self._order):
            spec = agg.spec
            rule = self.datamap.rule(spec.retention.rule)
            clock = self.retention.get((spec.name, agg.role), RetentionTally())
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
            if not items:
                continue  # everything it received is withheld
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

    def _withheld(self, held: list[ItemTally]) -> list[ReportWithheld]:
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
                    ground_label=_ground_label(rule.ground),
                    explanation=_lt(rule.explanation) if rule.explanation else None,
                )
            )
        return out

    def _retained(self, summaries: Sequence[RetainedSummary]) -> list[ReportRetained]:
        rows: dict[tuple[str, str | None, str], ReportRetained] = {}
        for summary in sorted(summaries, key=lambda s: (s.collection, s.role or "", s.rule)):
            items = [item for item in summary.items if not self._retained_withheld(summary, item)]
            if not items:
                continue
            key = (summary.collection, summary.role, summary.rule)
            row = rows.get(key)
            if row is None:
                spec = next((c for c in self.datamap.collections if c.name == key[0]), None)
                row = rows[key] = ReportRetained(
                    collection=summary.collection,
                    collection_label=_lt(spec.label)
                    if spec
                    else LocalizedText(ko=summary.collection, en=summary.collection),
                    role=summary.role,
                    items=[],
                    item_labels=[],
                    records=0,
                    rule=summary.rule,
                    legal_basis=LocalizedText(ko=summary.legal_basis_ko, en=summary.legal_basis_en),
                    kept_until=summary.destroy_after,
                    purpose=_lt(RETAINED_PURPOSE),
                )
            row.records += 1
            row.kept_until = max(row.kept_until, summary.destroy_after)
            row.items = sorted(set(row.items) | set(items))
            row.item_labels = [
                _lt(ITEMS[i].label) if i in ITEMS else LocalizedText(ko=i, en=i) for i in row.items
            ]
        return list(rows.values())

    def _retained_withheld(self, summary: RetainedSummary, item: str) -> bool:
        return any(
            rule.matches(summary.collection, summary.role or "", item) for rule in self.withheld
        )


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
    retained: Sequence[RetainedSummary] = (),
    max_values_per_item: int = DEFAULT_MAX_VALUES,
) -> AccessReport:
    """Read every collection in the data map for the subject and build the five sections.

    Raises SourceError (SourceUnavailable / SourceRejected) if any source fails: a report is
    complete or it is not made.
    """
    builder = _ReportBuilder(connectors, withheld, max_values_per_item)
    for spec in connectors.datamap.collections:
        connector = connectors.for_collection(spec)
        async for batch in connector.export_batches(spec, subject=subject):
            builder.add_batch(spec, batch)
    return builder.build(request_id=request_id, subject=subject, now=now, retained=retained)
