"""The access report folds a large subject's records in batches (column by column): every
figure equals what counting the same rows one record at a time gives, across batch boundaries,
with values over the per-item limit, records whose fields were all erased, consents and suppliers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.datamap.connectors.base import BATCH_ROWS
from app.datamap.connectors.postgres import connect
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.loader import parse_datamap
from app.fulfilment.reports.columns import KST
from tests.support.reports import make_report

PHONE = "+821044440001"
DASHED = "010-4444-0001"
DIGITS = "01044440001"
ROWS = 5 * BATCH_ROWS + 1000  # five batches for the sender role, two for the recipient
LIMIT = 25  # values listed per item; the names pool is larger
CARRIERS = ["cj", "hanjin", "lotte", "logen"]
T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def datamap_data(schema: str) -> dict[str, Any]:
    return {
        "sources": {"bulk": {"connector": "postgres", "dsn": "self", "schema": schema}},
        "controllers": [{"code": "qoo10", "name": "Qoo10"}, {"code": "gmarket", "name": "G"}],
        "collections": [
            {
                "name": "parcels",
                "label": {"ko": "배송", "en": "Parcels"},
                "source": "bulk",
                "table": "parcels",
                "record_key": "id",
                "purposes": ["delivery", "third_party_provision"],
                "retention": {"rule": "contracts", "clock_column": "created_at"},
                "erasure": "redact",
                "consent": {
                    "column": "opt_in",
                    "at_column": "opted_at",
                    "purpose": "third_party_provision",
                },
                "processors": [
                    {"column": "carrier", "at_column": "handed_at", "reference_column": "no"}
                ],
                "roles": {
                    # The match column is no field here, so a record can have every field erased.
                    "sender": {
                        "match": [
                            {"column": "s_phone", "identifier": "phone", "format": "kr_dashed"}
                        ],
                        "fields": [
                            {"column": "s_name", "item": "name"},
                            {"column": "s_address", "item": "address"},
                        ],
                    },
                    "recipient": {
                        "origin": {"from": "sender", "controller_column": "market"},
                        "match": [{"column": "r_phone", "identifier": "phone", "format": "digits"}],
                        "fields": [
                            {"column": "r_name", "item": "name"},
                            {"column": "r_phone", "item": "phone"},
                            {"column": "handed_at", "item": "access_time"},
                        ],
                    },
                },
            }
        ],
    }


def generated_rows() -> list[tuple[Any, ...]]:
    rng = random.Random(13)
    names = [f"이름{n:02d}" for n in range(40)]
    addresses = ["", None, "서울 1", "부산 2", "대구 3"]
    rows = []
    for n in range(ROWS):
        sender = n % 5 != 0 or n % 50 == 0  # a few sent to themselves
        erased = sender and n % 17 == 0
        rows.append(
            (
                n,
                f"T{n}",
                DASHED if sender else "010-9999-0000",
                None if erased else rng.choice(names),
                "" if erased else rng.choice(addresses),
                DIGITS if not sender or n % 50 == 0 else "01099990000",
                rng.choice(names),
                rng.choice([*CARRIERS, None]),
                rng.choice([T0 + timedelta(hours=rng.randint(0, 9000)), None]),
                T0 - timedelta(hours=rng.randint(0, 9000)),
                rng.choice([True, False, None]),
                rng.choice([T0 + timedelta(days=rng.randint(0, 300)), None]),
                rng.choice(["qoo10", "gmarket", None, None]),
            )
        )
    return rows


COLUMNS = (
    "id", "no", "s_phone", "s_name", "s_address", "r_phone", "r_name", "carrier", "handed_at",
    "created_at", "opt_in", "opted_at", "market",
)  # fmt: skip


@pytest.fixture
async def bulk(database_url: str) -> AsyncIterator[str]:
    schema = f"bulk_{uuid.uuid4().hex[:8]}"
    conn = await connect(database_url)
    try:
        await conn.execute(
            f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.parcels (id int PRIMARY KEY, "
            "no text, s_phone text, s_name text, s_address text, r_phone text, r_name text, "
            "carrier text, handed_at timestamptz, created_at timestamptz, opt_in boolean, "
            "opted_at timestamptz, market text)"
        )
        await conn.copy_records_to_table(
            "parcels", schema_name=schema, records=generated_rows(), columns=COLUMNS
        )
        yield schema
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


def text(value: Any) -> str:
    return (
        value.astimezone(KST).isoformat(timespec="seconds")
        if isinstance(value, datetime)
        else str(value)
    )


def fold(rows: list[asyncpg.Record], fields: list[str], supplier: str | None) -> dict[str, Any]:
    """One record at a time, the plain way: what the report must say about these rows."""
    out: dict[str, Any] = {
        "items": {f: {"records": 0, "values": {}, "omitted": 0} for f in fields},
        "held": 0,
        "latest": None,
        "carriers": {},
        "consents": {},
        "origins": {},
    }
    for row in rows:
        held = False
        for column in fields:
            value = row[column]
            if value is None or value == "":
                continue
            held = True
            item = out["items"][column]
            item["records"] += 1
            key = text(value)
            if key in item["values"]:
                item["values"][key] += 1
            elif len(item["values"]) < LIMIT:
                item["values"][key] = 1
            else:
                item["omitted"] += 1
        if not held:
            continue
        out["held"] += 1
        out["latest"] = max(filter(None, [out["latest"], row["created_at"]]))
        if row["carrier"] is not None:
            span = out["carriers"].setdefault(row["carrier"], [0, None, None])
            span[0] += 1
            if row["handed_at"] is not None:
                span[1] = min(filter(None, [span[1], row["handed_at"]]))
                span[2] = max(filter(None, [span[2], row["handed_at"]]))
        if row["opt_in"] is not None:
            consent = out["consents"].setdefault(row["opt_in"], [0, None])
            consent[0] += 1
            if row["opted_at"] is not None:
                consent[1] = max(filter(None, [consent[1], row["opted_at"]]))
        market = row[supplier] if supplier else None
        out["origins"][market] = out["origins"].get(market, 0) + 1
    return out


async def test_a_large_subject_folds_in_batches_to_the_figures_of_each_record(
    bulk: str, database_url: str, settings: Any
) -> None:
    datamap = parse_datamap(datamap_data(bulk))
    report = await make_report(
        database_url,
        settings,
        datamap,
        SubjectIdentifiers(phone=PHONE),
        now=T0,
        max_values_per_item=LIMIT,
    )
    conn = await connect(database_url)
    try:  # the same rows in the order the connector's statements read them (a table scan)
        sent = await conn.fetch(f"SELECT * FROM {bulk}.parcels WHERE s_phone = ANY($1)", [DASHED])
        received = await conn.fetch(
            f"SELECT * FROM {bulk}.parcels WHERE r_phone = ANY($1)", [DIGITS]
        )
    finally:
        await conn.close()
    assert len(sent) > 2 * BATCH_ROWS and len(received) > BATCH_ROWS
    expected = {
        "sender": fold(sent, ["s_name", "s_address"], None),
        "recipient": fold(received, ["r_name", "r_phone", "handed_at"], "market"),
    }
    assert expected["sender"]["held"] < len(sent)  # some records were wholly erased
    assert expected["sender"]["items"]["s_name"]["omitted"] > 0  # more names than listed

    assert report.sources[0].records == len(sent) + len(received)
    columns = {"name": "_name", "address": "_address", "phone": "_phone"}
    for item in report.items:
        role = expected[item.role]
        prefix = "s" if item.role == "sender" else "r"
        column = "handed_at" if item.item == "access_time" else prefix + columns[item.item]
        figures = role["items"][column]
        assert item.records == figures["records"], (item.role, item.item)
        assert {v.value: v.records for v in item.values} == figures["values"]
        assert item.values_omitted == figures["omitted"]
        assert {o.controller: o.records for o in item.origins} == role["origins"]
    assert len(report.items) == 5

    carriers: dict[str, list[Any]] = {}
    for role in expected.values():
        for code, (records, first, last) in role["carriers"].items():
            span = carriers.setdefault(code, [0, None, None])
            span[0] += records
            span[1] = min(filter(None, [span[1], first]))
            span[2] = max(filter(None, [span[2], last]))
    assert {
        p.processor: [p.records, p.first_provided_at, p.last_provided_at]
        for p in report.third_parties
    } == carriers

    consents: dict[bool, list[Any]] = {}
    for role in expected.values():
        for given, (records, changed) in role["consents"].items():
            entry = consents.setdefault(given, [0, None])
            entry[0] += records
            entry[1] = max(filter(None, [entry[1], changed]))
    assert {c.given: [c.records, c.last_changed_at] for c in report.consents} == consents

    rule = datamap.rule("contracts")
    sender, recipient = expected["sender"]["latest"], expected["recipient"]["latest"]
    assert sender != recipient
    assert {r.item: r.retained_until for r in report.retention} == {
        "name": rule.retain_until(max(sender, recipient)),
        "address": rule.retain_until(sender),
        "phone": rule.retain_until(recipient),
        "access_time": rule.retain_until(recipient),
    }
