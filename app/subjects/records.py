"""The subject's own records that hold an item, so a correction can name which one.

Read-only, through the data map's connectors, and only the fields of the subject's own role
(a sender sees the sender's half of a delivery). Used by the privacy center's correction form;
``record_ref`` is what ``app/fulfilment/correction.py:names_record`` matches: the processor's
reference (a tracking number) when the record has one, else the record's key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from app.crypto import Crypto
from app.datamap.connectors import open_connectors
from app.datamap.connectors.base import SubjectRecord
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.schema import CollectionSpec, DataMap
from app.subjects import identifiers
from app.vocabulary import ROLES, Text

_RECORD_REF = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")  # app/schemas/requests.py RECORD_REF_PATTERN
MAX_CHOICES = 50


@dataclass(frozen=True)
class RecordChoice:
    """One record holding the item, as the subject may pick it."""

    ref: str
    collection_ko: str
    collection_en: str
    role_ko: str
    role_en: str
    value: str
    since: datetime | None


async def subject_identifiers(
    session: AsyncSession, *, crypto: Crypto, subject_index: str
) -> SubjectIdentifiers | None:
    """The verified identifier behind a subject token's blind index, in clear (never log it)."""
    row = await identifiers.find_identifier(session, blind_index=subject_index)
    if row is None:
        return None
    value = identifiers.reveal(crypto, row)
    return SubjectIdentifiers.from_payload({row.kind: value})


def _ref(record: SubjectRecord) -> str | None:
    for handover in record.handovers:
        if handover.reference and _RECORD_REF.match(handover.reference):
            return handover.reference
    key = str(record.key)
    return key if _RECORD_REF.match(key) else None


def _column(spec: CollectionSpec, role: str, item: str) -> str | None:
    role_spec = spec.roles.get(role)
    if role_spec is None:
        return None
    for field in role_spec.fields:
        if field.item == item:
            return field.column
    return None


async def records_holding(
    datamap: DataMap,
    *,
    subject: SubjectIdentifiers,
    item: str,
    self_url: str,
    http: httpx.AsyncClient,
    crypto: Crypto,
) -> list[RecordChoice]:
    """Every record of the subject's own role that holds ``item``, newest first (at most 50)."""
    wanted = [
        spec
        for spec in datamap.collections
        if any(_column(spec, role, item) for role in spec.roles)
    ]
    choices: list[RecordChoice] = []
    if not wanted:
        return choices
    async with open_connectors(datamap, self_url=self_url, http=http, crypto=crypto) as conns:
        for spec in wanted:
            async for record in conns.for_collection(spec).export(spec, subject=subject):
                column = _column(spec, record.role, item)
                ref = _ref(record)
                if column is None or ref is None:
                    continue
                value = record.fields.get(column)
                role_label = (
                    spec.roles[record.role].label
                    or ROLES.get(record.role)
                    or Text(ko=record.role, en=record.role)
                )
                choices.append(
                    RecordChoice(
                        ref=ref,
                        collection_ko=spec.label.ko,
                        collection_en=spec.label.en,
                        role_ko=role_label.ko,
                        role_en=role_label.en,
                        value="" if value is None else str(value),
                        since=record.retention_start,
                    )
                )
                if len(choices) >= MAX_CHOICES:
                    break
    return _by_ref(choices)


def _by_ref(found: list[RecordChoice]) -> list[RecordChoice]:
    """One choice per ``record_ref``: a correction naming it reaches every record it names
    (a bare key such as ``1`` can name a record in several collections), so they go together."""
    merged: dict[str, RecordChoice] = {}
    for choice in sorted(found, key=lambda c: c.since.timestamp() if c.since else 0.0):
        seen = merged.get(choice.ref)
        if seen is None:
            merged[choice.ref] = choice
            continue
        merged[choice.ref] = RecordChoice(
            ref=choice.ref,
            collection_ko=f"{seen.collection_ko}, {choice.collection_ko}",
            collection_en=f"{seen.collection_en}, {choice.collection_en}",
            role_ko=seen.role_ko
            if seen.role_ko == choice.role_ko
            else f"{seen.role_ko}, {choice.role_ko}",
            role_en=seen.role_en
            if seen.role_en == choice.role_en
            else f"{seen.role_en}, {choice.role_en}",
            value=seen.value if seen.value == choice.value else f"{seen.value}, {choice.value}",
            since=choice.since,
        )
    return sorted(
        merged.values(), key=lambda c: c.since.timestamp() if c.since else 0.0, reverse=True
    )
