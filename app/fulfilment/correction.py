"""Carry out an approved correction (PIPA Art. 36; policy section 6) through the data map.

``fulfil.correction`` reads the subject's records and plans, per record, the new values of the
role's fields holding each corrected item (only the role the subject holds in that record, so a
sender's correction never touches the recipient's half; only the record named by ``record_ref``
when one was given). New values are written in the format the column stores identifiers in.
Then ``fulfil.apply`` (app/fulfilment/plan.py) writes the sources and, in one
transaction, lifts the restriction, queues ``personal_data.corrected`` for each processor that
received an affected record (only its references and the new values of the items it holds) and
completes the request. A record another controller supplied (the data map's ``origin``) is
also passed on to that controller as ``personal_data.correction_requested`` (Decree Art. 43(2),
``app/fulfilment/forwarding.py``).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from app.config import ConfigError
from app.datamap.connectors import SourceError, SubjectRecord, open_connectors
from app.datamap.identifiers import identifier_candidates
from app.datamap.schema import CollectionSpec, DataMap, FieldSpec
from app.fulfilment import forwarding
from app.fulfilment.common import context_datamap, self_database_url, source_retry
from app.fulfilment.plan import conclude, decision_refused, open_request, resume
from app.outbox.jobs import Dead, Outcome, Retry, Sent, WorkerContext
from app.requests import completion

JOB_TOPIC = "fulfil.correction"
EVENT_TYPE = "personal_data.corrected"
NOT_FOUND_GROUND = "record_not_found"
NOT_FOUND_NOTE = {
    "ko": "정정을 요구하신 기록을 귀하의 개인정보에서 찾을 수 없습니다. 기록 번호(운송장 번호 "
    "등)를 확인하여 다시 요구해 주십시오.",
    "en": "We could not find the record you asked us to correct among your personal "
    "information. Please check the record number (e.g. the tracking number) and ask again.",
}


def stored_value(spec: CollectionSpec, role: str, field: FieldSpec, value: str) -> str:
    """The new value as this column stores it: an identifier column keeps its own format."""
    for match in spec.roles[role].match:
        if match.column != field.column or match.identifier != field.item:
            continue
        candidates = identifier_candidates(value, match.identifier, match.format)
        if candidates:
            return candidates[0]
    return value


def names_record(record: SubjectRecord, record_ref: str | None) -> bool:
    """Does ``record_ref`` (a record key or a processor's reference) name this record?"""
    if record_ref is None:
        return True
    if str(record.key) == record_ref:
        return True
    return any(handover.reference == record_ref for handover in record.handovers)


def plan_record(
    spec: CollectionSpec, record: SubjectRecord, corrections: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(column → stored new value, item → new value) for one record of the subject."""
    values: dict[str, Any] = {}
    items: dict[str, str] = {}
    role = spec.roles[record.role]
    for entry in corrections:
        if not names_record(record, entry.get("record_ref")):
            continue
        for field in role.fields:
            if field.item == entry["item"]:
                values[field.column] = stored_value(spec, record.role, field, entry["new_value"])
                items[entry["item"]] = entry["new_value"]
    return values, items


def processor_notices(affected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One notice per processor: its own references and the new values of the items it holds."""
    per_processor: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in affected:
        for handover in record["handovers"]:
            held = handover["items"]
            values = {
                item: value
                for item, value in record["items"].items()
                if held is None or item in held
            }
            if values:
                per_processor[handover["processor"]].append(
                    {"reference": handover["reference"], "items": values}
                )
    return [
        {
            "processor": code,
            "event_type": EVENT_TYPE,
            "data": {"records": sorted(records, key=lambda r: r["reference"])},
        }
        for code, records in sorted(per_processor.items())
    ]


async def plan_correction(
    connectors: Any, datamap: DataMap, *, subject: Any, corrections: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every record of the subject a correction reaches, with its changes and handovers."""
    wanted = {entry["item"] for entry in corrections}
    affected: list[dict[str, Any]] = []
    for spec in datamap.collections:
        if not any(field.item in wanted for role in spec.roles.values() for field in role.fields):
            continue
        connector = connectors.for_collection(spec)
        async for record in connector.export(spec, subject=subject):
            values, items = plan_record(spec, record, corrections)
            if not values:
                continue
            affected.append(
                {
                    "source": spec.source,
                    "kind": "correct",
                    "collection": spec.name,
                    "role": record.role,
                    "key": record.key,
                    "values": values,
                    "items": items,
                    "handovers": [
                        {
                            "processor": handover.processor,
                            "reference": handover.reference or str(record.key),
                            "items": list(handover.items) if handover.items else None,
                        }
                        for handover in record.handovers
                    ],
                    "supplier": forwarding.supplier_of(spec, record),
                }
            )
    return affected


async def handle_fulfil_correction(message: Any, payload: Any, ctx: WorkerContext) -> Outcome:
    """Worker handler for ``job`` / ``fulfil.correction``: read, plan, hand to ``fulfil.apply``."""
    try:
        request_id = uuid.UUID(payload["request_id"])
    except (KeyError, TypeError, ValueError):
        return Dead("fulfil.correction payload is malformed")
    opened = await open_request(ctx, request_id)
    if opened is None:
        return Sent("request no longer in progress")
    request, body, identifiers = opened
    if await resume(ctx, request=request, now=ctx.clock.now()):
        return Sent("resumed the unfinished plan of an earlier attempt")
    refused = decision_refused(request)
    corrections = [entry for entry in body.get("corrections", []) if entry["item"] not in refused]
    try:
        datamap = context_datamap(ctx)
    except ConfigError:
        return Retry("data map cannot be loaded", timedelta(minutes=10))
    try:
        async with open_connectors(
            datamap, self_url=self_database_url(ctx), http=ctx.http, crypto=ctx.crypto
        ) as connectors:
            affected = await plan_correction(
                connectors, datamap, subject=identifiers, corrections=corrections
            )
    except SourceError as exc:
        return source_retry(message, exc, request_id=request_id, step="fulfil.correction")
    counts: dict[str, int] = defaultdict(int)
    for record in affected:
        for item in record["items"]:
            counts[item] += 1
    unmatched = sorted({entry["item"] for entry in corrections} - set(counts))
    if corrections and len(unmatched) == len({entry["item"] for entry in corrections}):
        # No record to correct: a refusal the system proposes and an officer decides.
        async with ctx.db.transaction() as session:
            await completion.return_to_review(
                session,
                crypto=ctx.crypto,
                now=ctx.clock.now(),
                request_id=request.id,
                ground=NOT_FOUND_GROUND,
                explanation=NOT_FOUND_NOTE["en" if request.locale == "en" else "ko"],
                reason="no_matching_record",
            )
        return Sent("no record to correct: returned for an officer's decision")
    notices = processor_notices(affected)
    requests = forwarding.controller_notices(affected, event_type=forwarding.CORRECTION_REQUESTED)
    plan = {
        "changes": [
            {key: record[key] for key in ("source", "kind", "collection", "role", "key", "values")}
            for record in affected
        ],
        "notices": notices + requests,
        "result": {
            "corrected_items": sorted(counts),
            "records_corrected": len(affected),
            "records_by_item": dict(sorted(counts.items())),
            "processors_notified": [notice["processor"] for notice in notices],
            "controllers_notified": [notice["processor"] for notice in requests],
        },
        # An item whose corrections reached no record is refused; the rest is corrected.
        "refused_items": [{"item": item, "ground": NOT_FOUND_GROUND} for item in unmatched],
    }
    await conclude(ctx, request=request, plan=plan, now=ctx.clock.now())
    return Sent()
