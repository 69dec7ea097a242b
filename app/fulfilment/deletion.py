"""Fulfil an approved deletion request in the worker (PIPA Arts. 36, 21; policy section 2).

The lifecycle queues ``job`` / ``fulfil.deletion`` with ``{"request_id"}`` on approval. The job:

1. **reads** the subject's records in every source (per role, narrowed by the request's items and
   categories). A source down: ``Retry``, nothing changed yet.
2. **plans and separates**, in one transaction: each record whose collection's retention rule
   still runs (clock start + period > now) is copied into the retained-records store
   (``retention.retain_records``, its own data key, ``destroy_after`` = clock start + period);
   the whole plan (record keys, items, processor references; no personal data) is recorded as a
   ``deletion_planned`` event of the request.
3. **erases** in each source by the collection's strategy (kept records are removed or masked
   too: their copy is in the retained store). A source down: ``Retry``.
4. **completes**, in one transaction: ``personal_data.deleted`` notices to the processors that
   received erased records (only their own references and items),
   ``personal_data.deletion_requested`` to the controllers that supplied them (Decree
   Art. 43(2), ``app/fulfilment/forwarding.py``) and
   ``common.complete`` (partially completed with ground ``pipa_36_1_proviso`` per kept
   item).

Safe to repeat: retaining is idempotent (unique origin index), the copy commits before the
source changes, erasing is idempotent and re-checks the subject, and a retry merges the plans
of earlier runs (records erased by an earlier run no longer match the subject, but their plan
still lists them for the result and the processors' notices). Notices are queued only in the
transaction that completes the request, which happens once.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.actors import SYSTEM
from app.config import ConfigError, Settings
from app.crypto import Crypto
from app.datamap.connectors import Connectors, Erasure, SourceError, SubjectRecord, open_connectors
from app.datamap.connectors.base import json_value
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.schema import CollectionSpec, DataMap, FieldSpec
from app.fulfilment import common, forwarding
from app.fulfilment.common import context_datamap, self_database_url, source_retry
from app.models import DsrRequest, DsrRequestEvent
from app.outbox.jobs import Dead, Outcome, Retry, Sent, WorkerContext
from app.requests import deadlines, lifecycle
from app.retention import rules, store
from app.subjects import identifiers as subjects
from app.vocabulary import item_label, items_in
from app.webhooks import notices

logger = logging.getLogger("dsr.deletion")

JOB_KIND = "job"
JOB_TOPIC = "fulfil.deletion"
PLANNED = "deletion_planned"  # the request event holding one run's plan
DELETED_EVENT = "personal_data.deleted"
KEPT_GROUND = "pipa_36_1_proviso"


@dataclass
class Target:
    """One record part of the subject to erase (and, if ``rule``, kept in the retained store)."""

    source: str
    collection: str
    role: str
    key: str | int
    columns: list[str] | None  # None: every field of the role (delete_row deletes the row)
    items: list[str]
    rule: str | None = None  # the running retention rule: separated, not just erased
    destroy_after: datetime | None = None
    handovers: list[dict[str, Any]] = field(default_factory=list)  # {processor, reference, items}
    supplier: dict[str, str] | None = None  # {controller, reference}: Decree Art. 43(2)

    @property
    def origin(self) -> tuple[str, str, str, str]:
        return (self.source, self.collection, self.role, str(self.key))

    def as_plan(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "collection": self.collection,
            "role": self.role,
            "key": self.key,
            "columns": self.columns,
            "items": self.items,
            "rule": self.rule,
            "destroy_after": self.destroy_after.isoformat() if self.destroy_after else None,
            "handovers": self.handovers,
            "supplier": self.supplier,
        }

    @classmethod
    def from_plan(cls, data: dict[str, Any]) -> Target:
        until = data.get("destroy_after")
        return cls(
            source=data["source"],
            collection=data["collection"],
            role=data["role"],
            key=data["key"],
            columns=data.get("columns"),
            items=list(data["items"]),
            rule=data.get("rule"),
            destroy_after=datetime.fromisoformat(until) if until else None,
            handovers=list(data.get("handovers") or []),
            supplier=data.get("supplier"),
        )


@dataclass
class Found:
    """The plan of this run, and the payloads of the records to keep (never persisted as is)."""

    targets: list[Target] = field(default_factory=list)
    keep: list[store.RetainInput] = field(default_factory=list)


def items_in_scope(scope: dict[str, Any]) -> set[str] | None:
    """The item codes a deletion covers; None: everything."""
    named, categories = scope.get("items") or [], scope.get("categories") or []
    if not named and not categories:
        return None
    # A category no longer in the vocabulary (a request stored before it changed) covers nothing,
    # never everything.
    return set(named) | items_in(categories)


async def find_targets(
    connectors: Connectors,
    *,
    settings: Settings,
    datamap: DataMap,
    subject: SubjectIdentifiers,
    subject_key: str,
    request_id: uuid.UUID,
    items: set[str] | None,
    now: datetime,
) -> Found:
    """Read every record of the subject in scope; decide erase or separate (SourceError: retry)."""
    found = Found()
    for spec in datamap.collections:
        connector = connectors.for_collection(spec)
        async for record in connector.export(spec, subject=subject):
            role = spec.roles[record.role]
            fields = [f for f in role.fields if items is None or f.item in items]
            if not fields:
                continue
            whole = len(fields) == len(role.fields)
            columns = None if whole else [f.column for f in fields]
            item_codes: list[str] = list(dict.fromkeys(f.item for f in fields))
            target = Target(
                source=spec.source,
                collection=spec.name,
                role=record.role,
                key=record.key,
                columns=columns,
                items=item_codes,
                handovers=[
                    {
                        "processor": handover.processor,
                        "reference": handover.reference,
                        "items": [
                            i for i in item_codes if handover.items is None or i in handover.items
                        ],
                    }
                    for handover in record.handovers
                    if handover.items is None or set(handover.items) & set(item_codes)
                ],
                supplier=forwarding.supplier_of(spec, record),
            )
            term = running_term(settings, spec, record.retention_start, now)
            if term is not None and record.retention_start is not None:
                target.rule = term.rule
                target.destroy_after = term.destroy_after(record.retention_start)
                found.keep.append(
                    retain_input(
                        spec,
                        record,
                        fields,
                        term=term,
                        subject_key=subject_key,
                        request_id=request_id,
                    )
                )
            found.targets.append(target)
    return found


def retain_input(
    spec: CollectionSpec,
    record: SubjectRecord,
    fields: Sequence[FieldSpec],
    *,
    term: rules.RetentionRule,
    subject_key: str,
    request_id: uuid.UUID,
) -> store.RetainInput:
    """The copy of a record's ``fields`` that the retained store keeps under ``term``."""
    assert record.retention_start is not None
    return store.RetainInput(
        source=spec.source,
        collection=spec.name,
        record_key=str(record.key),
        subject_key=subject_key,
        items=list(dict.fromkeys(f.item for f in fields)),
        term=term,
        clock_start=record.retention_start,
        payload={
            f.item: json_value(record.fields.get(f.column))
            for f in fields
            if record.fields.get(f.column) is not None
        },
        role=record.role,
        request_id=request_id,
    )


def running_term(
    settings: Settings, spec: CollectionSpec, clock_start: datetime | None, now: datetime
) -> rules.RetentionRule | None:
    """The collection's retention rule if it still runs for this record, else None."""
    if spec.retention.rule not in settings.retention_rules or clock_start is None:
        return None  # until_purpose_achieved, or no clock: nothing requires keeping it
    term = rules.retention_rule(settings, spec.retention.rule)
    return term if term.runs_at(clock_start, now) else None


async def earlier_plans(session: AsyncSession, *, request_id: uuid.UUID) -> list[Target]:
    """The targets earlier runs of this request's deletion planned (and may have erased)."""
    rows = (
        await session.execute(
            sa.select(col(DsrRequestEvent.details))
            .where(
                col(DsrRequestEvent.request_id) == request_id,
                col(DsrRequestEvent.action) == PLANNED,
            )
            .order_by(col(DsrRequestEvent.id))
        )
    ).scalars()
    return [Target.from_plan(entry) for details in rows for entry in details.get("targets", [])]


def merge(*plans: Iterable[Target]) -> list[Target]:
    """One target per record part; a later plan's entry replaces an earlier one's."""
    merged: dict[tuple[str, str, str, str], Target] = {}
    for plan in plans:
        for target in plan:
            merged[target.origin] = target
    return list(merged.values())


async def erase_targets(
    connectors: Connectors, *, subject: SubjectIdentifiers, targets: Sequence[Target]
) -> int:
    """Erase per source (all or nothing per source call); SourceError propagates."""
    by_source: dict[str, list[Erasure]] = defaultdict(list)
    for target in targets:
        by_source[target.source].append(
            Erasure(
                collection=target.collection,
                role=target.role,
                key=target.key,
                columns=tuple(target.columns) if target.columns is not None else None,
            )
        )
    applied = 0
    for source, erasures in by_source.items():
        result = await connectors.for_source(source).erase(erasures, subject=subject)
        applied += result.applied
    return applied


def deletion_result(
    settings: Settings, targets: Sequence[Target], notified: Sequence[str]
) -> dict[str, Any]:
    """What was deleted and what is kept, under which law, until when (no personal data)."""
    deleted: dict[tuple[str, str], dict[str, Any]] = {}
    kept: dict[tuple[str, str, str], dict[str, Any]] = {}
    for target in targets:
        if target.rule is None:
            entry = deleted.setdefault(
                (target.collection, target.role),
                {"collection": target.collection, "role": target.role, "items": [], "records": 0},
            )
        else:
            term = rules.retention_rule(settings, target.rule)
            entry = kept.setdefault(
                (target.collection, target.role, target.rule),
                {
                    "collection": target.collection,
                    "role": target.role,
                    "items": [],
                    "records": 0,
                    "rule": term.rule,
                    "period": term.period,
                    "legal_basis": {"ko": term.legal_basis_ko, "en": term.legal_basis_en},
                    "destroy_after": None,
                },
            )
            until = target.destroy_after.isoformat() if target.destroy_after else None
            if until and (entry["destroy_after"] is None or until > entry["destroy_after"]):
                entry["destroy_after"] = until
        entry["records"] += 1
        entry["items"] = sorted({*entry["items"], *target.items})
    return {
        "deleted": list(deleted.values()),
        "kept": list(kept.values()),
        "processors_notified": sorted(set(notified)),
    }


def kept_items(result: dict[str, Any]) -> list[str]:
    """Items of the subject kept under another law (each a refused part of the request)."""
    return sorted({item for entry in result["kept"] for item in entry["items"]})


def notice_lines(settings: Settings, result: dict[str, Any], locale: str) -> list[str]:
    """One line per kept group for the subject's notice: items, law, until when."""
    lines = []
    for entry in result["kept"]:
        labels = ", ".join(item_label(item, locale) for item in entry["items"])
        law = entry["legal_basis"]["en" if locale == "en" else "ko"]
        until = deadlines.local_day_text(
            datetime.fromisoformat(entry["destroy_after"]), settings.display_timezone
        )
        lines.append(f"{labels}: {law}, {until}")
    return sorted(set(lines))


async def queue_deleted_notices(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    targets: Sequence[Target],
) -> list[str]:
    """One ``personal_data.deleted`` notice per processor that received an erased record,
    carrying only that processor's references and the items deleted."""
    per_processor: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for target in targets:
        for handover in target.handovers:
            if not handover["items"]:
                continue
            per_processor[handover["processor"]].append(
                {
                    "reference": handover["reference"],
                    "collection": target.collection,
                    "items": handover["items"],
                }
            )
    for code, records in sorted(per_processor.items()):
        await notices.queue_processor_notice(
            session,
            crypto=crypto,
            now=now,
            processor_code=code,
            event_type=DELETED_EVENT,
            data={
                "records": sorted(records, key=lambda r: (r["collection"], r["reference"] or ""))
            },
            request_ref=request_id,
        )
    return sorted(per_processor)


async def queue_deletion_requests(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    request_id: uuid.UUID,
    targets: Sequence[Target],
) -> list[str]:
    """``personal_data.deletion_requested`` to each controller that supplied an erased record,
    with only its references and the items (Decree Art. 43(2))."""
    requests = forwarding.controller_notices(
        [{"supplier": t.supplier, "items": t.items} for t in targets],
        event_type=forwarding.DELETION_REQUESTED,
    )
    for request in requests:
        await notices.queue_processor_notice(
            session,
            crypto=crypto,
            now=now,
            processor_code=request["processor"],
            event_type=request["event_type"],
            data=request["data"],
            request_ref=request_id,
        )
    return [request["processor"] for request in requests]


async def handle_fulfil_deletion(message: Any, payload: Any, ctx: WorkerContext) -> Outcome:
    """Worker handler for ``job`` / ``fulfil.deletion``."""
    try:
        request_id = uuid.UUID(payload["request_id"])
    except (KeyError, TypeError, ValueError):
        return Dead("fulfil.deletion payload is malformed")
    async with ctx.db.sessionmaker() as session:
        request = await session.get(DsrRequest, request_id)
        if request is None or request.type != "deletion":
            return Dead("fulfil.deletion for an unknown request")
        if request.status != "in_progress":
            return Sent("request no longer in progress")
        identifiers = await subjects.identifiers_of(
            session, crypto=ctx.crypto, identifier_ids=request.identifier_ids
        )
        subject_key = request.subject_index
        scope = dict(request.scope or {})
    try:
        datamap = context_datamap(ctx)
    except ConfigError:
        return Retry("data map cannot be loaded", timedelta(minutes=10))
    now = ctx.clock.now()
    async with open_connectors(
        datamap, self_url=self_database_url(ctx), http=ctx.http, crypto=ctx.crypto
    ) as connectors:
        try:
            found = await find_targets(
                connectors,
                settings=ctx.settings,
                datamap=datamap,
                subject=identifiers,
                subject_key=subject_key,
                request_id=request_id,
                items=items_in_scope(scope),
                now=now,
            )
        except SourceError as exc:
            return source_retry(message, exc, request_id=request_id, step="fulfil.deletion.read")
        # The copies commit before any source changes: a crash can lose no kept record.
        async with ctx.db.transaction() as session:
            request = await lifecycle.lock_request(session, request_id)
            if request.status != "in_progress":
                return Sent("request no longer in progress")
            await store.retain_records(session, crypto=ctx.crypto, now=now, records=found.keep)
            if found.targets:
                await lifecycle.record(
                    session,
                    crypto=ctx.crypto,
                    request=request,
                    actor=SYSTEM,
                    action=PLANNED,
                    now=now,
                    details={"targets": [target.as_plan() for target in found.targets]},
                )
            targets = merge(await earlier_plans(session, request_id=request_id))
        try:
            await erase_targets(connectors, subject=identifiers, targets=targets)
        except SourceError as exc:
            return source_retry(message, exc, request_id=request_id, step="fulfil.deletion.erase")
    async with ctx.db.transaction() as session:
        request = await lifecycle.lock_request(session, request_id)
        if request.status != "in_progress":
            return Sent("request no longer in progress")
        notified = await queue_deleted_notices(
            session, crypto=ctx.crypto, now=now, request_id=request_id, targets=targets
        )
        asked = await queue_deletion_requests(
            session, crypto=ctx.crypto, now=now, request_id=request_id, targets=targets
        )
        result = {**deletion_result(ctx.settings, targets, notified), "controllers_notified": asked}
        kept = kept_items(result)
        locale = request.locale if request.locale in ("ko", "en") else "ko"
        await common.complete(
            session,
            crypto=ctx.crypto,
            settings=ctx.settings,
            now=now,
            request_id=request_id,
            result=result,
            refused_items=[{"item": item, "ground": KEPT_GROUND} for item in kept],
            notice_extra={"kept": notice_lines(ctx.settings, result, locale)},
        )
    logger.info(
        "deletion carried out",
        extra={
            "event": "deletion.completed",
            "request_ref": str(request_id),
            "count": len(targets),
        },
    )
    return Sent()
