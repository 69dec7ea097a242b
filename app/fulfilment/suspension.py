"""Carry out an approved suspension or consent withdrawal (PIPA Art. 37) through the data map.

``fulfil.suspension``: each named purpose is suspended (``processing_suspension`` rows, enforced
by the usage check as ``processing_suspended``) unless the subject has a contract under way that
needs it: a record of a collection serving that purpose whose ``in_flight`` condition holds (a
delivery not yet delivered). That purpose is refused with ground ``pipa_37_2_4`` (the subject
can end the contract and ask again), the rest is suspended. Each processor that received a
record of a suspended purpose gets ``processing.suspended`` with its own references and the
purposes.

``fulfil.consent_withdrawal``: an optional purpose (``marketing``) is suspended (provisionally
already at intake, app/requests/holds.py) and the data held **only** for it is destroyed
through the connectors by the collection's erasure strategy (Art. 37(3), (5)): a record of a
collection serving only withdrawn purposes is erased whole, a field serving only them is erased
alone. What another law still requires to keep (the collection's retention rule runs) is first
separated into the retained-records store, as a deletion does, and reported with its legal basis
and destruction date. A non-optional purpose named in a withdrawal is handled as a suspension.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from app.config import ConfigError, Settings
from app.datamap.connectors import SourceError, SubjectRecord, open_connectors
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.schema import CollectionSpec, DataMap
from app.fulfilment.common import context_datamap, self_database_url, source_retry
from app.fulfilment.deletion import retain_input, running_term
from app.fulfilment.plan import conclude, decision_refused, open_request, resume
from app.models import DsrRequest
from app.outbox.jobs import Dead, Outcome, Retry, Sent, WorkerContext
from app.requests import completion
from app.retention import store
from app.vocabulary import OPTIONAL_PURPOSES

SUSPENSION_TOPIC = "fulfil.suspension"
WITHDRAWAL_TOPIC = "fulfil.consent_withdrawal"
EVENT_TYPE = "processing.suspended"
CONTRACT_GROUND = "pipa_37_2_4"
CONTRACT_NOTE = {
    "ko": "진행 중인 배송 등 계약 이행에 필요한 처리는 정지할 수 없습니다. 계약(배송)을 해지하시면 "
    "다시 처리정지를 요구하실 수 있습니다.",
    "en": "Processing needed for a contract under way (e.g. a delivery in progress) cannot be "
    "suspended. You may end the contract (cancel the delivery) and ask again.",
}


def erasure_of(spec: CollectionSpec, record: SubjectRecord, withdrawn: set[str]) -> Any:
    """What of this record is held only for withdrawn purposes: 'all', its columns, or None."""
    if not withdrawn:
        return None
    if set(spec.purposes) <= withdrawn:
        return "all"
    columns = [
        field.column
        for field in spec.roles[record.role].fields
        if set(spec.field_purposes(field)) <= withdrawn
    ]
    return columns or None


async def read_records(
    connectors: Any, datamap: DataMap, *, subject: SubjectIdentifiers, purposes: set[str]
) -> list[tuple[CollectionSpec, SubjectRecord]]:
    """The subject's records in every collection serving one of ``purposes``."""
    found: list[tuple[CollectionSpec, SubjectRecord]] = []
    for spec in datamap.collections:
        field_purposes = {
            purpose
            for role in spec.roles.values()
            for field in role.fields
            for purpose in spec.field_purposes(field)
        }
        if not (set(spec.purposes) | field_purposes) & purposes:
            continue
        connector = connectors.for_collection(spec)
        async for record in connector.export(spec, subject=subject):
            found.append((spec, record))
    return found


def plan_suspension(
    records: list[tuple[CollectionSpec, SubjectRecord]],
    *,
    requested: list[str],
    refused_at_decision: set[str],
    withdrawal: bool,
) -> dict[str, Any]:
    """Which purposes are suspended or refused, what is erased, which processor is told what."""
    wanted = [purpose for purpose in requested if purpose not in refused_at_decision]
    withdrawn = {p for p in wanted if withdrawal and p in OPTIONAL_PURPOSES}
    blocked: set[str] = set()
    for spec, record in records:
        if spec.in_flight is not None and record.in_flight:
            blocked |= (set(spec.purposes) & set(wanted)) - OPTIONAL_PURPOSES
    suspended = [purpose for purpose in wanted if purpose not in blocked]
    changes: list[dict[str, Any]] = []
    notified: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for spec, record in records:
        erase = erasure_of(spec, record, withdrawn)
        if erase is not None:
            changes.append(
                {
                    "source": spec.source,
                    "kind": "erase",
                    "collection": spec.name,
                    "role": record.role,
                    "key": record.key,
                    "columns": None if erase == "all" else erase,
                }
            )
        purposes = set(spec.purposes) & set(suspended)
        for handover in record.handovers if purposes else []:
            reference = handover.reference or str(record.key)
            notified[handover.processor][reference] |= purposes
    notices = [
        {
            "processor": code,
            "event_type": EVENT_TYPE,
            "data": {
                "records": [
                    {"reference": reference, "purposes": sorted(purposes)}
                    for reference, purposes in sorted(references.items())
                ]
            },
        }
        for code, references in sorted(notified.items())
    ]
    refused = [
        {"item": purpose, "ground": CONTRACT_GROUND} for purpose in wanted if purpose in blocked
    ]
    result: dict[str, Any] = {
        "suspended_purposes": suspended,
        "consent_withdrawn": sorted(withdrawn),
        "records_erased": len(changes),
        "processors_notified": [notice["processor"] for notice in notices],
    }
    if refused:
        result["refused_purposes"] = [entry["item"] for entry in refused]
        result["contract_in_progress"] = True
        result["note"] = CONTRACT_NOTE
    return {
        "changes": changes,
        "notices": notices,
        "suspend": {"purposes": suspended, "consent_withdrawal": withdrawal},
        "refused_items": refused,
        "result": result,
    }


async def _fulfil(message: Any, payload: Any, ctx: WorkerContext, *, withdrawal: bool) -> Outcome:
    topic = WITHDRAWAL_TOPIC if withdrawal else SUSPENSION_TOPIC
    try:
        request_id = uuid.UUID(payload["request_id"])
    except (KeyError, TypeError, ValueError):
        return Dead(f"{topic} payload is malformed")
    opened = await open_request(ctx, request_id)
    if opened is None:
        return Sent("request no longer in progress")
    request, body, identifiers = opened
    if await resume(ctx, request=request, now=ctx.clock.now()):
        return Sent("resumed the unfinished plan of an earlier attempt")
    requested = list(dict.fromkeys(body.get("purposes") or []))
    try:
        datamap = context_datamap(ctx)
    except ConfigError:
        return Retry("data map cannot be loaded", timedelta(minutes=10))
    try:
        async with open_connectors(
            datamap, self_url=self_database_url(ctx), http=ctx.http, crypto=ctx.crypto
        ) as connectors:
            records = await read_records(
                connectors, datamap, subject=identifiers, purposes=set(requested)
            )
    except SourceError as exc:
        return source_retry(message, exc, request_id=request_id, step=topic)
    plan = plan_suspension(
        records,
        requested=requested,
        refused_at_decision=decision_refused(request),
        withdrawal=withdrawal,
    )
    now = ctx.clock.now()
    if plan["refused_items"] and not plan["suspend"]["purposes"] and not plan["changes"]:
        # Nothing can be suspended: that is a refusal, which an officer decides (two people).
        async with ctx.db.transaction() as session:
            await completion.return_to_review(
                session,
                crypto=ctx.crypto,
                now=now,
                request_id=request.id,
                ground=CONTRACT_GROUND,
                explanation=CONTRACT_NOTE["en" if request.locale == "en" else "ko"],
                reason="every_purpose_in_contract",
            )
        return Sent("nothing to suspend: returned for an officer's decision")
    keep = records_to_keep(ctx.settings, records, plan["changes"], request=request, now=now)
    if keep:
        # Committed before any source is touched, so nothing the law keeps is lost (a retry
        # copies nothing twice: retained records are unique per request and record).
        async with ctx.db.transaction() as session:
            await store.retain_records(session, crypto=ctx.crypto, now=now, records=keep)
        plan["result"]["kept"] = [
            {
                "collection": entry.collection,
                "items": list(entry.items),
                "rule": entry.term.rule,
                "legal_basis": {
                    "ko": entry.term.legal_basis.ko,
                    "en": entry.term.legal_basis.en,
                },
                "destroy_after": entry.term.destroy_after(entry.clock_start).isoformat(),
            }
            for entry in keep
        ]
    await conclude(ctx, request=request, plan=plan, now=now)
    return Sent()


def records_to_keep(
    settings: Settings,
    records: list[tuple[CollectionSpec, SubjectRecord]],
    changes: list[dict[str, Any]],
    *,
    request: DsrRequest,
    now: datetime,
) -> list[store.RetainInput]:
    """The erased parts whose retention rule still runs: copies for the retained store."""
    erased = {(c["collection"], c["role"], str(c["key"])): c.get("columns") for c in changes}
    keep: list[store.RetainInput] = []
    for spec, record in records:
        key = (spec.name, record.role, str(record.key))
        if key not in erased:
            continue
        term = running_term(settings, spec, record.retention_start, now)
        if term is None or record.retention_start is None:
            continue
        columns = erased[key]
        fields = [
            f for f in spec.roles[record.role].fields if columns is None or f.column in columns
        ]
        keep.append(
            retain_input(
                spec,
                record,
                fields,
                term=term,
                subject_key=request.subject_index,
                request_id=request.id,
            )
        )
    return keep


async def handle_fulfil_suspension(message: Any, payload: Any, ctx: WorkerContext) -> Outcome:
    """Worker handler for ``job`` / ``fulfil.suspension``."""
    return await _fulfil(message, payload, ctx, withdrawal=False)


async def handle_fulfil_consent_withdrawal(
    message: Any, payload: Any, ctx: WorkerContext
) -> Outcome:
    """Worker handler for ``job`` / ``fulfil.consent_withdrawal``."""
    return await _fulfil(message, payload, ctx, withdrawal=True)
