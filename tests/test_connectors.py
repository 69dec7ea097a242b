"""Connectors against real PostgreSQL and a real internal service on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from app.config import Settings
from app.crypto import Crypto
from app.datamap.connectors import (
    Connectors,
    Erasure,
    FieldUpdate,
    HttpConnector,
    PostgresConnector,
    RecordRef,
    SourceRejected,
    SourceUnavailable,
    open_connectors,
)
from app.datamap.connectors.postgres import HASHED, connect
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.loader import parse_datamap
from app.datamap.schema import DataMap
from tests.support.dsr_source import ReferenceSource, SourceRecord
from tests.support.servers import closed_port

TABLE = 'deliv"eries; DROP TABLE victim; --'
ME = SubjectIdentifiers(phone="+821055550001", email="me@example.com")
OTHER = SubjectIdentifiers(phone="+821077770002")
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def ops_map(schema: str, *, dsn: str = "self") -> dict[str, Any]:
    return {
        "sources": {"ops": {"connector": "postgres", "dsn": dsn, "schema": schema}},
        "collections": [
            {
                "name": "deliveries",
                "label": {"ko": "배송", "en": "Deliveries"},
                "source": "ops",
                "table": TABLE,
                "record_key": "id",
                "purposes": ["delivery"],
                "retention": {"rule": "contracts", "clock_column": "created at"},
                "erasure": "redact",
                "restriction_column": "restricted",
                "processors": [
                    {"column": "carrier", "at_column": "handed", "reference_column": "tracking"}
                ],
                "roles": {
                    "sender": {
                        "match": [
                            {"column": 's"phone', "identifier": "phone", "format": "kr_dashed"}
                        ],
                        "fields": [
                            {"column": "s_name", "item": "name"},
                            {"column": 's"phone', "item": "phone"},
                            {"column": "s_address", "item": "address", "erasure": "hash"},
                        ],
                    },
                    "recipient": {
                        "match": [
                            {
                                "column": "r_phone",
                                "identifier": "phone",
                                "format": ["digits", "e164"],
                            }
                        ],
                        "fields": [
                            {"column": "r_name", "item": "name"},
                            {"column": "r_phone", "item": "phone"},
                        ],
                    },
                },
            },
            {
                "name": "devices",
                "label": {"ko": "기기", "en": "Devices"},
                "source": "ops",
                "table": "devices",
                "record_key": "serial",
                "purposes": ["app_service"],
                "retention": {"rule": "until_purpose_achieved"},
                "erasure": "delete_row",
                "roles": {
                    "user": {
                        "match": [{"column": "email", "identifier": "email", "format": "ci"}],
                        "fields": [
                            {"column": "email", "item": "email"},
                            {"column": "label", "item": "device_serial"},
                        ],
                    }
                },
            },
        ],
    }


@pytest.fixture
async def ops(database_url: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A schema of our own with hostile table and column names, and a table to protect."""
    schema = f"ops_{uuid.uuid4().hex[:8]}"
    conn = await connect(database_url)
    q = f'"{schema}"'
    await conn.execute(f"CREATE SCHEMA {q}")
    await conn.execute(f"CREATE TABLE {q}.victim (v int)")
    await conn.execute(
        f'CREATE TABLE {q}."{TABLE.replace(chr(34), chr(34) * 2)}" ('
        'id bigint PRIMARY KEY, s_name text, "s""phone" text, s_address text, '
        "r_name text NOT NULL, r_phone text, carrier text, handed timestamptz, tracking text, "
        '"created at" timestamptz NOT NULL, restricted boolean NOT NULL DEFAULT false)'
    )
    await conn.execute(
        f"CREATE TABLE {q}.devices (serial text PRIMARY KEY, email text, label text)"
    )
    rows = [
        # me as sender, someone else receives
        (
            1,
            "김하늘",
            "010-5555-0001",
            "서울 강서구 공항대로 1",
            "왕芳",
            "+86139000",
            "hct",
            T0,
            "T1",
        ),
        (
            2,
            "김하늘",
            "010-5555-0001",
            "서울 강서구 공항대로 1",
            "박민준",
            "01077770002",
            "yamato",
            T0,
            "T2",
        ),
        # someone else sends to me (stored as digits)
        (
            3,
            "박민준",
            "010-7777-0002",
            "부산 해운대로 9",
            "김하늘",
            "01055550001",
            "hanjin",
            T0,
            "T3",
        ),
        # not me at all
        (
            4,
            "이서연",
            "010-1234-5678",
            "대구 달구벌대로 3",
            "최도윤",
            "01099998888",
            "ups",
            T0,
            "T4",
        ),
    ]
    await conn.executemany(
        f'INSERT INTO {q}."{TABLE.replace(chr(34), chr(34) * 2)}" '
        '(id, s_name, "s""phone", s_address, r_name, r_phone, carrier, handed, tracking, '
        '"created at") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)',
        rows,
    )
    await conn.executemany(
        f"INSERT INTO {q}.devices VALUES ($1, $2, $3)",
        [("R1", "Me@Example.com", "Galaxy"), ("R2", "other@example.com", "iPhone")],
    )
    try:
        yield schema, conn
    finally:
        await conn.execute(f"DROP SCHEMA {q} CASCADE")
        await conn.close()


@pytest.fixture
def crypto(settings: Settings) -> Crypto:
    return Crypto.from_settings(settings)


@pytest.fixture
async def connectors(
    ops: tuple[str, asyncpg.Connection], database_url: str, crypto: Crypto
) -> AsyncIterator[Connectors]:
    datamap = parse_datamap(ops_map(ops[0]))
    async with (
        httpx.AsyncClient() as http,
        open_connectors(datamap, self_url=database_url, http=http, crypto=crypto) as c,
    ):
        yield c


async def export(connectors: Connectors, name: str, subject: SubjectIdentifiers) -> list[Any]:
    spec = connectors.datamap.collection(name)
    return [r async for r in connectors.for_collection(spec).export(spec, subject=subject)]


async def test_export_finds_each_role_by_its_own_format(connectors: Connectors) -> None:
    records = await export(connectors, "deliveries", ME)
    assert sorted((r.role, r.key) for r in records) == [
        ("recipient", 3),
        ("sender", 1),
        ("sender", 2),
    ]
    received = next(r for r in records if r.role == "recipient")
    # Only my half of the record: the sender's name and phone are not even read.
    assert received.fields == {"r_name": "김하늘", "r_phone": "01055550001"}
    assert [h.processor for h in received.handovers] == ["hanjin"]
    assert received.handovers[0].reference == "T3" and received.handovers[0].at == T0
    assert received.retention_start == T0 and received.restricted is False
    sent = next(r for r in records if r.key == 1)
    assert sent.fields == {
        "s_name": "김하늘",
        's"phone': "010-5555-0001",
        "s_address": "서울 강서구 공항대로 1",
    }
    refs = [
        ref
        async for ref in connectors.for_source("ops").find(
            connectors.datamap.collection("deliveries"), subject=ME
        )
    ]
    assert len(refs) == 3


async def test_email_matches_case_insensitively(connectors: Connectors) -> None:
    records = await export(connectors, "devices", ME)
    assert [(r.key, r.fields) for r in records] == [
        ("R1", {"email": "Me@Example.com", "label": "Galaxy"})
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        SubjectIdentifiers(email="' or '1'='1@example.com"),
        SubjectIdentifiers(email="x@example.com'); drop table victim; --"),
        SubjectIdentifiers(email="%@%"),
    ],
)
async def test_hostile_identifiers_stay_inert(
    connectors: Connectors, ops: tuple[str, asyncpg.Connection], hostile: SubjectIdentifiers
) -> None:
    assert await export(connectors, "devices", hostile) == []
    assert await export(connectors, "deliveries", hostile) == []
    schema, conn = ops
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".victim') == 0
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".devices') == 2


async def test_correct_changes_only_my_records(
    connectors: Connectors, ops: tuple[str, asyncpg.Connection]
) -> None:
    connector = connectors.for_source("ops")
    result = await connector.correct(
        [
            FieldUpdate("deliveries", "sender", 1, {"s_address": "서울 마포구 양화로 45"}),
            FieldUpdate("deliveries", "sender", 2, {"s_address": "서울 마포구 양화로 45"}),
            FieldUpdate("deliveries", "recipient", 3, {"r_name": "김하늘B"}),
            # record 4 is someone else's: the key alone does not reach it
            FieldUpdate("deliveries", "sender", 4, {"s_name": "해커"}),
        ],
        subject=ME,
    )
    assert result.applied == 3
    assert result.missing == (RecordRef("deliveries", "sender", 4),)
    schema, conn = ops
    table = f'"{schema}"."{TABLE.replace(chr(34), chr(34) * 2)}"'
    rows = dict(await conn.fetch(f"SELECT id, s_address FROM {table} ORDER BY id"))
    assert rows[1] == rows[2] == "서울 마포구 양화로 45"
    assert await conn.fetchval(f"SELECT s_name FROM {table} WHERE id = 4") == "이서연"
    with pytest.raises(ValueError, match="not fields of this role"):
        await connector.correct(
            [FieldUpdate("deliveries", "recipient", 3, {"s_name": "x"})], subject=ME
        )


async def test_a_failing_statement_leaves_nothing_half_applied(
    connectors: Connectors, ops: tuple[str, asyncpg.Connection]
) -> None:
    connector = connectors.for_source("ops")
    with pytest.raises(SourceRejected) as caught:
        await connector.correct(
            [
                FieldUpdate("deliveries", "sender", 1, {"s_name": "바뀐이름"}),
                FieldUpdate("deliveries", "recipient", 3, {"r_name": None}),  # NOT NULL
            ],
            subject=ME,
        )
    assert "NotNullViolation" in str(caught.value) and "바뀐" not in str(caught.value)
    schema, conn = ops
    table = f'"{schema}"."{TABLE.replace(chr(34), chr(34) * 2)}"'
    assert await conn.fetchval(f"SELECT s_name FROM {table} WHERE id = 1") == "김하늘"


async def test_erase_by_strategy_and_idempotently(
    connectors: Connectors, ops: tuple[str, asyncpg.Connection]
) -> None:
    connector = connectors.for_source("ops")
    erasures = [
        Erasure("deliveries", "sender", 1),  # redact name/phone, hash the address
        Erasure("deliveries", "recipient", 3, columns=("r_phone",)),
        Erasure("devices", "user", "R1"),  # delete_row
    ]
    result = await connector.erase(erasures, subject=ME)
    assert result.applied == 3 and result.missing == ()
    schema, conn = ops
    table = f'"{schema}"."{TABLE.replace(chr(34), chr(34) * 2)}"'
    row = await conn.fetchrow(f'SELECT s_name, "s""phone", s_address FROM {table} WHERE id = 1')
    assert row["s_name"] == "[redacted]" and row['s"phone'] == "[redacted]"
    assert HASHED.fullmatch(row["s_address"])
    assert row["s_address"] == connectors.hash_value("서울 강서구 공항대로 1")
    recipient = await conn.fetchrow(f"SELECT r_name, r_phone, s_name FROM {table} WHERE id = 3")
    assert recipient["r_phone"] == "[redacted]"
    assert (
        recipient["r_name"] == "김하늘" and recipient["s_name"] == "박민준"
    )  # the other half stays
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".devices') == 1
    # Record 1 no longer matches me (its phone is redacted): a retry changes nothing.
    again = await connector.erase(erasures[:1], subject=ME)
    assert again.applied == 0 and again.missing == (RecordRef("deliveries", "sender", 1),)
    # Hashing twice is a no-op even when the row still matches.
    await connector.erase([Erasure("deliveries", "sender", 2, columns=("s_address",))], subject=ME)
    first = await conn.fetchval(f"SELECT s_address FROM {table} WHERE id = 2")
    await connector.erase([Erasure("deliveries", "sender", 2, columns=("s_address",))], subject=ME)
    assert await conn.fetchval(f"SELECT s_address FROM {table} WHERE id = 2") == first


async def test_restrict_sets_the_flag_for_my_records(
    connectors: Connectors, ops: tuple[str, asyncpg.Connection]
) -> None:
    connector = connectors.for_source("ops")
    result = await connector.restrict(
        [RecordRef("deliveries", "recipient", 3), RecordRef("deliveries", "sender", 4)],
        subject=ME,
        restricted=True,
    )
    assert result.applied == 1
    records = await export(connectors, "deliveries", ME)
    assert {r.key: r.restricted for r in records} == {1: False, 2: False, 3: True}
    with pytest.raises(ValueError, match="no restriction_column"):
        await connector.restrict([RecordRef("devices", "user", "R1")], subject=ME, restricted=True)


async def test_streams_many_rows_in_small_batches(
    ops: tuple[str, asyncpg.Connection], database_url: str, crypto: Crypto
) -> None:
    schema, conn = ops
    table = f'"{schema}"."{TABLE.replace(chr(34), chr(34) * 2)}"'
    await conn.executemany(
        f'INSERT INTO {table} (id, s_name, "s""phone", r_name, "created at") '
        "VALUES ($1, '김하늘', '010-5555-0001', 'x', $2)",
        [(100 + i, T0 + timedelta(minutes=i)) for i in range(3000)],
    )
    datamap = parse_datamap(ops_map(schema))
    spec = datamap.collection("deliveries")
    connector = PostgresConnector(
        "ops", database_url, schema=schema, collections=datamap.collections, hasher=str, prefetch=50
    )
    async with connector:
        count = 0
        async for _ in connector.export(spec, subject=ME):
            count += 1
    assert count == 3003


async def test_a_database_that_is_down_is_unavailable(crypto: Crypto) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing"
    datamap = parse_datamap(ops_map("ops", dsn=url))
    async with (
        httpx.AsyncClient() as http,
        open_connectors(datamap, self_url="unused", http=http, crypto=crypto) as c,
    ):
        spec = datamap.collection("deliveries")
        with pytest.raises(SourceUnavailable) as caught:
            async for _ in c.for_collection(spec).export(spec, subject=ME):
                pass
        assert caught.value.source == "ops"
        with pytest.raises(SourceUnavailable):
            await c.for_source("ops").check()


# --- http -------------------------------------------------------------------------------------

TOKEN = "svc-token-for-tests"


def crm_map(url: str, token: str = TOKEN, page_size: int = 2) -> DataMap:
    return parse_datamap(
        {
            "sources": {
                "crm": {
                    "connector": "http",
                    "base_url": url,
                    "token": token,
                    "page_size": page_size,
                }
            },
            "collections": [
                {
                    "name": "tickets",
                    "label": {"ko": "상담", "en": "Tickets"},
                    "source": "crm",
                    "resource": "tickets",
                    "record_key": "id",
                    "purposes": ["counseling"],
                    "retention": {"rule": "complaints", "clock_column": "opened_at"},
                    "erasure": "delete_row",
                    "roles": {
                        "customer": {
                            "match": [{"column": "email", "identifier": "email"}],
                            "fields": [
                                {"column": "email", "item": "email"},
                                {"column": "body", "item": "inquiry", "erasure": "redact"},
                            ],
                        }
                    },
                }
            ],
        }
    )


def tickets(n: int, email: str = "me@example.com") -> list[SourceRecord]:
    return [
        SourceRecord(
            resource="tickets",
            key=f"TK-{i}",
            matches={"customer": {"email": email}},
            fields={"customer": {"email": email, "body": f"문의 {i}", "agent_notes": "secret"}},
            handovers=[{"processor": "mnwise", "at": T0.isoformat(), "reference": f"M{i}"}],
            retention_start=T0.isoformat(),
        )
        for i in range(n)
    ]


@pytest.fixture
def crm() -> Iterator[ReferenceSource]:
    with ReferenceSource(TOKEN, tickets(5) + tickets(2, "other@example.com")) as source:
        yield source


async def test_http_export_pages_and_keeps_only_mapped_fields(
    crm: ReferenceSource, crypto: Crypto
) -> None:
    datamap = crm_map(crm.url)
    spec = datamap.collection("tickets")
    async with httpx.AsyncClient() as http:
        connector = HttpConnector("crm", datamap.sources["crm"], http=http, collections=[spec])  # type: ignore[arg-type]
        records = [r async for r in connector.export(spec, subject=ME)]
        refs = [r async for r in connector.find(spec, subject=ME)]
    assert len(records) == 5 and len(refs) == 5
    assert records[0].fields == {"email": "me@example.com", "body": "문의 0"}  # no agent_notes
    assert records[0].handovers[0].processor == "mnwise"
    assert records[0].retention_start == T0
    exports = crm.server.requests("/dsr/export")
    assert len(exports) == 3  # pages of 2
    assert exports[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert exports[0].json()["subject"] == {"phone": "+821055550001", "email": "me@example.com"}


async def test_http_changes_are_batched_per_call(crm: ReferenceSource, crypto: Crypto) -> None:
    datamap = crm_map(crm.url)
    spec = datamap.collection("tickets")
    async with httpx.AsyncClient() as http:
        connector = HttpConnector("crm", datamap.sources["crm"], http=http, collections=[spec])  # type: ignore[arg-type]
        result = await connector.correct(
            [
                FieldUpdate("tickets", "customer", "TK-0", {"body": "수정"}),
                FieldUpdate("tickets", "customer", "TK-99", {"body": "x"}),
            ],
            subject=ME,
        )
        assert result.applied == 1 and result.missing[0].key == "TK-99"
        assert crm.records[0].fields["customer"]["body"] == "수정"
        erased = await connector.erase(
            [
                Erasure("tickets", "customer", "TK-1"),
                Erasure("tickets", "customer", "TK-2", columns=("body",)),
            ],
            subject=ME,
        )
        assert erased.applied == 2
        assert crm.records[1].deleted
        assert crm.records[2].fields["customer"]["body"] == "[redacted]"
        body = crm.server.requests("/dsr/erase")[0].json()
        assert body["erasures"][0] == {
            "resource": "tickets",
            "key": "TK-1",
            "role": "customer",
            "delete_row": True,
        }
        assert body["erasures"][1]["fields"] == {
            "body": {"strategy": "redact", "value": "[redacted]"}
        }
        restricted = await connector.restrict(
            [RecordRef("tickets", "customer", "TK-3")], subject=ME, restricted=True
        )
        assert restricted.applied == 1 and crm.records[3].restricted
        # A failed call applies nothing and says the source is unavailable.
        crm.fail_next_change = True
        with pytest.raises(SourceUnavailable):
            await connector.correct(
                [FieldUpdate("tickets", "customer", "TK-4", {"body": "y"})], subject=ME
            )
        assert crm.records[4].fields["customer"]["body"] == "문의 4"


async def test_http_failures_are_classified(crm: ReferenceSource) -> None:
    async with httpx.AsyncClient() as http:
        wrong = crm_map(crm.url, token="wrong")
        spec = wrong.collection("tickets")
        connector = HttpConnector("crm", wrong.sources["crm"], http=http, collections=[spec])  # type: ignore[arg-type]
        with pytest.raises(SourceRejected, match="HTTP 401"):
            [r async for r in connector.export(spec, subject=ME)]
        crm.down = True
        right = crm_map(crm.url)
        connector = HttpConnector("crm", right.sources["crm"], http=http, collections=[spec])  # type: ignore[arg-type]
        with pytest.raises(SourceUnavailable, match="HTTP 503"):
            [r async for r in connector.export(spec, subject=ME)]
        with pytest.raises(SourceUnavailable):
            await connector.check()
        gone = crm_map(f"http://127.0.0.1:{closed_port()}")
        connector = HttpConnector("crm", gone.sources["crm"], http=http, collections=[spec])  # type: ignore[arg-type]
        with pytest.raises(SourceUnavailable, match="ConnectError"):
            [r async for r in connector.export(spec, subject=ME)]
