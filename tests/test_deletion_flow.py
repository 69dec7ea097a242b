"""A deletion request end to end on the demo data (PIPA Arts. 36, 21; policy section 2).

Real PostgreSQL with the demo schema, the demo data map, a frozen clock, the gateway as a
RecordingServer. Expired records are erased; records a law still requires to keep are
separated into the retained store and removed or masked in the source; processors that held
deleted records get ``personal_data.deleted`` with only their own references.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
import yaml
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.clock import FrozenClock
from app.datamap.connectors.postgres import connect
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.loader import parse_datamap
from app.db import Database
from app.demo.load import DEMO_SUBJECT, demo_datamap_text, drop_demo, load_demo
from app.errors import NotFound
from app.fulfilment.deletion import earlier_plans, handle_fulfil_deletion
from app.models import OutboxMessage, RetentionKey
from app.outbox.jobs import Dead, Sent
from app.outbox.queue import read_payload
from app.outbox.worker import Worker
from app.retention import store
from app.vocabulary import CATEGORIES
from tests.conftest import FROZEN_AT
from tests.support.demo import demo_settings
from tests.support.lifecycle import AGENT, OFFICER, drive, make_subject, staff
from tests.support.reports import make_report
from tests.support.servers import RecordingServer
from tests.test_linked_identifiers import verify_identifier

DEMO_PHONE = DEMO_SUBJECT.phone_e164
DIGITS = DEMO_PHONE.replace("+82", "0")
OLD_TRACKING = "OLD0000000001"
OLD_MARKETING_EMAIL = "old.demo@example.com"


@pytest.fixture
async def demo_db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Fresh demo data per test (deletion changes it), plus two expired records of the subject."""
    conn = await connect(database_url)
    try:
        await load_demo(conn, subjects=5, records_per_subject=2, now=FROZEN_AT, reset=True)
        # A delivery sent six years ago (contracts: 5 years, over) and a marketing contact
        # from a year ago (advertising: 6 months, over): both are erased, not kept.
        await conn.execute(
            "INSERT INTO demo.deliveries (id, tracking_no, carrier_code, sender_name, sender_phone,"
            " sender_address, recipient_name, recipient_phone, recipient_address, fee_krw,"
            " created_at, handed_over_at) VALUES (900000001, $1, 'hanjin', $2, $3, $4, '박다른',"
            " '01077770002', '부산광역시 해운대구 1', 4000, $5, $5)",
            OLD_TRACKING,
            DEMO_SUBJECT.name,
            DEMO_SUBJECT.phone,
            DEMO_SUBJECT.address,
            FROZEN_AT - timedelta(days=6 * 366),
        )
        await conn.execute(
            "INSERT INTO demo.marketing_contacts (id, name, email, mobile, marketing_opt_in,"
            " opted_in_at, sms_agency_code, created_at)"
            " VALUES (900000002, $1, $2, $3, true, $4, 'lguplus', $4)",
            DEMO_SUBJECT.name,
            OLD_MARKETING_EMAIL,
            DIGITS,
            FROZEN_AT - timedelta(days=365),
        )
        yield conn
    finally:
        await drop_demo(conn)
        await conn.close()


@pytest.fixture
def settings_overrides(demo_db: Any, tmp_path: Path, gateway: RecordingServer) -> dict[str, Any]:
    return demo_settings(tmp_path, gateway)


async def approved_deletion(app: FastAPI, client: Any, body: dict[str, Any] | None = None) -> str:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post(
        "/v1/requests", json={"type": "deletion", **(body or {})}, headers=subject.headers
    )
    assert created.status_code == 201, created.text
    request_id = str(created.json()["id"])
    await drive(app, request_id, "in_progress")
    return request_id


async def subject_deliveries(
    conn: asyncpg.Connection, known: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM demo.deliveries WHERE tracking_no = ANY($1::text[])"
        " OR sender_phone = $2 OR recipient_phone = ANY($3::text[])",
        [OLD_TRACKING, *(known or [])],
        DEMO_SUBJECT.phone,
        [DIGITS, DEMO_PHONE],
    )
    return {row["tracking_no"]: dict(row) for row in rows}


async def deleted_notices(db: Database, crypto: Any) -> dict[str, list[dict[str, Any]]]:
    async with db.sessionmaker() as session:
        rows = (
            (
                await session.execute(
                    sa.select(OutboxMessage).where(
                        OutboxMessage.topic == "personal_data.deleted"  # type: ignore[arg-type]
                    )
                )
            )
            .scalars()
            .all()
        )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        assert row.target not in out, "one notice per processor"
        body = json.loads(base64.b64decode(read_payload(crypto, row)["body"]))
        out[str(row.target)] = body["data"]["records"]
    return out


async def test_deletion_erases_expired_separates_kept_and_notifies(
    app: FastAPI,
    client: Any,
    worker: Worker,
    gateway: RecordingServer,
    db: Database,
    clock: FrozenClock,
    demo_db: asyncpg.Connection,
) -> None:
    conn = demo_db
    before = await subject_deliveries(conn)
    sent = {t for t, r in before.items() if r["sender_phone"] == DEMO_SUBJECT.phone}
    received = set(before) - sent
    assert OLD_TRACKING in sent and len(sent) == 6 and len(received) == 3
    request_id = await approved_deletion(app, client)

    await worker.drain()

    # Deliveries: the subject's half is redacted, the other party's half untouched.
    after = await subject_deliveries(conn, list(before))
    for tracking in sent:
        assert after[tracking]["sender_name"] == "[redacted]"
        assert after[tracking]["sender_phone"] == "[redacted]"
        for column in ("recipient_name", "recipient_phone", "recipient_address"):
            assert after[tracking][column] == before[tracking][column]
    for tracking in received:
        assert after[tracking]["recipient_address"] == "[redacted]"
        for column in ("sender_name", "sender_phone", "sender_address"):
            assert after[tracking][column] == before[tracking][column]
    # Rows of delete_row collections are gone, kept or not.
    for table, where, value in (
        ("intl_reservations", "reservation_no", "IR202609000001"),
        ("email_counseling", "ticket_no", "CS-2026-000001"),
        ("app_installs", "phone", DEMO_PHONE),
        ("marketing_contacts", "mobile", DIGITS),
    ):
        count = await conn.fetchval(f"SELECT count(*) FROM demo.{table} WHERE {where} = $1", value)
        assert count == 0, table

    # The retained store: running records only, with their law and destruction date.
    rid = uuid.UUID(request_id)
    async with db.sessionmaker() as session:
        kept = await store.list_retained(session, request_id=rid)
    by_collection: dict[str, list[store.RetainedSummary]] = {}
    for summary in kept:
        by_collection.setdefault(summary.collection, []).append(summary)
    assert len(by_collection["deliveries"]) == 8  # not the six-year-old one
    assert OLD_TRACKING not in {s.record_key for s in kept}
    assert {s.role for s in by_collection["deliveries"]} == {"sender", "recipient"}
    assert len(by_collection["intl_reservations"]) == 1
    assert len(by_collection["email_counseling"]) == 1
    assert len(by_collection["marketing_contacts"]) == 1  # the recent one; the old one erased
    assert "app_installs" not in by_collection  # until_purpose_achieved: erased
    contract = by_collection["intl_reservations"][0]
    assert contract.rule == "contracts"
    assert "Electronic Commerce" in contract.legal_basis_en
    assert contract.destroy_after == contract.clock_start.replace(
        year=contract.clock_start.year + 5
    )
    async with db.transaction() as session:
        view = await store.read_retained(
            session,
            crypto=app.state.crypto,
            record_id=contract.id,
            now=clock.now(),
            actor="officer-1",
            role="privacy_officer",
            reason="tax-audit",
        )
    assert view.payload["customs_code"] == DEMO_SUBJECT.customs_code
    assert view.payload["name"] == DEMO_SUBJECT.name

    # The request: partially completed, kept items refused under Art. 36(1) proviso.
    async with db.sessionmaker() as session:
        row = (
            await session.execute(
                sa.text("SELECT status, refusals FROM dsr_request WHERE id = :id"), {"id": rid}
            )
        ).one()
    assert row.status == "partially_completed"
    refused = {entry["item"]: entry["ground"] for entry in row.refusals}
    assert set(refused.values()) == {"pipa_36_1_proviso"}
    assert {"name", "phone", "address", "customs_code", "inquiry"} <= set(refused)
    assert "device_serial" not in refused  # app install: erased

    # The subject's notice says what is kept, under which law, until when.
    notices = [
        r.json() for r in gateway.requests("/sms") if r.json()["template"] == "request_completed"
    ]
    assert len(notices) == 1
    text = notices[0]["body"]
    assert "전자상거래 등에서의 소비자보호에 관한 법률" in text
    assert "2031" in text  # contracts kept five years from 2026
    assert "분리 보관" in text

    # Processors: only those that held deleted records, with only their references.
    expected: dict[str, set[str]] = {}
    for tracking, record in before.items():
        if record["handed_over_at"] is not None:
            expected.setdefault(record["carrier_code"], set()).add(tracking)
    expected.setdefault("sf-express", set()).add("IR202609000001")
    expected.setdefault("yuhan-technos", set()).add("IR202609000001")
    notices_by_processor = await deleted_notices(db, app.state.crypto)
    # lguplus sent marketing SMS; channel-corp received the app install (policy section 4).
    assert set(notices_by_processor) == set(expected) | {"lguplus", "channel-corp"}
    for code, tracking_numbers in expected.items():
        refs = {entry["reference"] for entry in notices_by_processor[code]}
        assert refs == tracking_numbers, code
    broker = notices_by_processor["yuhan-technos"]
    assert broker == [
        {
            "reference": "IR202609000001",
            "collection": "intl_reservations",
            "items": ["name", "address", "customs_code"],
        }
    ]
    carrier_items = {
        tuple(e["items"])
        for e in notices_by_processor["sf-express"]
        if e["collection"] == "intl_reservations"
    }
    assert carrier_items == {("name", "phone", "address")}  # not the customs code
    serialized = json.dumps(notices_by_processor, ensure_ascii=False)
    assert DEMO_SUBJECT.name not in serialized and DEMO_SUBJECT.phone not in serialized

    # After the period: purge destroys them; the data cannot be decrypted or found.
    clock.advance(timedelta(days=5 * 366 + 1))
    await worker.run_periodic()
    async with db.transaction() as session:
        assert await store.list_retained(session, request_id=rid) == []
        keys = (
            await session.execute(
                sa.select(sa.func.count())
                .select_from(RetentionKey)
                .where(
                    RetentionKey.id.in_([s.id for s in kept])  # type: ignore[attr-defined]
                )
            )
        ).scalar()
        assert keys == 0
        with pytest.raises(NotFound):
            await store.read_retained(
                session,
                crypto=app.state.crypto,
                record_id=contract.id,
                now=clock.now(),
                actor="officer-1",
                role="privacy_officer",
                reason="tax-audit",
            )
        audited = (
            await session.execute(
                sa.text("SELECT count(*) FROM audit_entry WHERE action = 'retention.purged'")
            )
        ).scalar()
    assert audited == 1
    # Nothing of the subject is left in the source either.
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM demo.deliveries WHERE sender_phone = $1 OR recipient_phone = $2",
            DEMO_SUBJECT.phone,
            DIGITS,
        )
        == 0
    )


async def test_deletion_of_nothing_kept_completes_fully(
    app: FastAPI, client: Any, worker: Worker, db: Database, demo_db: asyncpg.Connection
) -> None:
    # Only the device item: app installs keep nothing (until the purpose is achieved).
    request_id = await approved_deletion(app, client, {"items": ["device_serial"]})
    await worker.drain()
    async with db.sessionmaker() as session:
        status = (
            await session.execute(
                sa.text("SELECT status FROM dsr_request WHERE id = :id"), {"id": request_id}
            )
        ).scalar()
        kept = await store.list_retained(session, request_id=uuid.UUID(request_id))
    assert status == "completed" and kept == []
    assert (
        await demo_db.fetchval(
            "SELECT count(*) FROM demo.app_installs WHERE phone = $1", DEMO_PHONE
        )
        == 1
    )  # narrowed to one field: the row stays, the device serial is nulled
    assert (
        await demo_db.fetchval(
            "SELECT device_serial FROM demo.app_installs WHERE phone = $1", DEMO_PHONE
        )
        is None
    )
    # Deliveries are untouched by a deletion narrowed to another item.
    assert (
        await demo_db.fetchval(
            "SELECT count(*) FROM demo.deliveries WHERE sender_phone = $1", DEMO_SUBJECT.phone
        )
        == 6
    )


async def test_source_failure_then_retry_keeps_each_record_once(
    app: FastAPI,
    client: Any,
    worker: Worker,
    db: Database,
    clock: FrozenClock,
    demo_db: asyncpg.Connection,
    database_url: str,
) -> None:
    """A source that refuses the erasure: the job retries; nothing is retained twice or lost."""
    role = f"dsr_ro_{uuid.uuid4().hex[:12]}"
    await demo_db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await demo_db.execute(f"GRANT USAGE ON SCHEMA demo TO {role}")
        await demo_db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA demo TO {role}")
        url = make_url(database_url).set(username=role, password=None)
        data = yaml.safe_load(demo_datamap_text())
        data["sources"]["demo_ro"] = {
            "connector": "postgres",
            "dsn": url.render_as_string(hide_password=False),
            "schema": "demo",
        }
        for spec in data["collections"]:
            if spec["name"] == "intl_reservations":
                spec["source"] = "demo_ro"
        worker.ctx.datamap = parse_datamap(data)
        request_id = await approved_deletion(app, client)
        rid = uuid.UUID(request_id)

        await worker.drain()  # reads both, retains, erases "demo", "demo_ro" refuses: retry

        async with db.sessionmaker() as session:
            first = await store.list_retained(session, request_id=rid)
            status = (
                await session.execute(
                    sa.text("SELECT status FROM dsr_request WHERE id = :id"), {"id": rid}
                )
            ).scalar()
        assert status == "in_progress"
        assert "intl_reservations" in {s.collection for s in first}
        assert (
            await demo_db.fetchval(
                "SELECT count(*) FROM demo.intl_reservations"
                " WHERE reservation_no = 'IR202609000001'"
            )
            == 1
        )  # not erased yet, but already copied
        assert (
            await demo_db.fetchval(
                "SELECT count(*) FROM demo.deliveries WHERE sender_phone = $1", DEMO_SUBJECT.phone
            )
            == 0
        )  # the other source went through

        await demo_db.execute(f"GRANT UPDATE, DELETE ON ALL TABLES IN SCHEMA demo TO {role}")
        clock.advance(timedelta(hours=1))
        await worker.drain()

        async with db.sessionmaker() as session:
            second = await store.list_retained(session, request_id=rid)
            status = (
                await session.execute(
                    sa.text("SELECT status FROM dsr_request WHERE id = :id"), {"id": rid}
                )
            ).scalar()
            count = (
                await session.execute(sa.text("SELECT count(*) FROM retained_record"))
            ).scalar()
        assert status == "partially_completed"
        assert sorted(s.id for s in second) == sorted(s.id for s in first)
        assert count == len(first)
        assert (
            await demo_db.fetchval(
                "SELECT count(*) FROM demo.intl_reservations"
                " WHERE reservation_no = 'IR202609000001'"
            )
            == 0
        )
        # Deliveries erased by the first run no longer match the subject, yet their
        # processors are notified: the first run's plan carries them.
        notices = await deleted_notices(db, app.state.crypto)
        assert {"hct", "yamato", "ninjavan", "yuhan-technos"} <= set(notices)
    finally:
        await demo_db.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA demo FROM {role}")
        await demo_db.execute(f"REVOKE ALL ON SCHEMA demo FROM {role}")
        await demo_db.execute(f"DROP ROLE {role}")


async def test_job_ignores_malformed_unknown_and_finished_requests(
    app: FastAPI, client: Any, worker: Worker, db: Database, demo_db: asyncpg.Connection
) -> None:
    assert isinstance(await handle_fulfil_deletion(None, {}, worker.ctx), Dead)
    unknown = {"request_id": str(uuid.uuid4())}
    assert isinstance(await handle_fulfil_deletion(None, unknown, worker.ctx), Dead)
    request_id = await approved_deletion(app, client)
    await worker.drain()
    # Run again after completion: nothing changes, no second notice or retained copy.
    async with db.sessionmaker() as session:
        before = await store.list_retained(session, request_id=uuid.UUID(request_id))
    again = await handle_fulfil_deletion(None, {"request_id": request_id}, worker.ctx)
    assert isinstance(again, Sent)
    async with db.sessionmaker() as session:
        after = await store.list_retained(session, request_id=uuid.UUID(request_id))
    assert [s.id for s in after] == [s.id for s in before]
    assert len(await deleted_notices(db, app.state.crypto)) > 0  # still one per processor


@pytest.mark.parametrize("category", sorted(CATEGORIES))
async def test_deleting_a_category_erases_what_the_report_lists_under_it(
    app: FastAPI,
    client: Any,
    worker: Worker,
    db: Database,
    database_url: str,
    demo_db: asyncpg.Connection,
    category: str,
) -> None:
    # One item→category mapping: the access report's grouping and deletion by category agree
    # (two vocabularies once put company_name in "identity" in one and "marketing" in the other).
    report = await make_report(
        database_url,
        app.state.settings,
        app.state.datamap,
        SubjectIdentifiers(phone=DEMO_PHONE),
    )
    listed = {entry.item for entry in report.items if entry.category == category}
    # The demo's access logs are found by e-mail; this subject proved a phone number.
    assert listed or category == "logs", f"the demo subject has nothing in {category}"
    request_id = await approved_deletion(app, client, {"categories": [category]})
    await worker.drain()
    async with db.sessionmaker() as session:
        planned = await earlier_plans(session, request_id=uuid.UUID(request_id))
    assert {item for target in planned for item in target.items} == listed


async def test_a_subject_with_two_identifiers_deletes_records_keyed_by_either(
    app: FastAPI,
    client: Any,
    worker: Worker,
    gateway: RecordingServer,
    db: Database,
    demo_db: asyncpg.Connection,
) -> None:
    """One person, several identifiers (PIPA Art. 35(1), 36): a deletion made with a token that
    proved the phone and the e-mail reaches the access logs, keyed by the e-mail alone."""
    logs = "SELECT count(*) FROM demo.access_logs WHERE account_email = $1"
    assert await demo_db.fetchval(logs, DEMO_SUBJECT.email) > 0
    _, phone_token = await verify_identifier(client, worker, gateway, "sms", DEMO_SUBJECT.phone)
    _, both_token = await verify_identifier(
        client, worker, gateway, "email", DEMO_SUBJECT.email, bearer=phone_token
    )
    created = await client.post(
        "/v1/requests", json={"type": "deletion"}, headers={"Authorization": f"Bearer {both_token}"}
    )
    assert created.status_code == 201, created.text
    base = f"/v1/staff/requests/{created.json()['id']}"
    agent = staff(app, *AGENT)
    assert (await client.post(f"{base}/review", headers=agent)).status_code == 200
    assert (await client.post(f"{base}/approve", json={}, headers=agent)).status_code == 200
    await worker.drain()

    detail = (await client.get(base, headers=staff(app, *OFFICER, sub="officer-1"))).json()
    assert detail["status"] in ("completed", "partially_completed")
    reached = {entry["collection"] for entry in detail["result"]["deleted"]}
    reached |= {entry["collection"] for entry in detail["result"]["kept"]}
    assert {"access_logs", "deliveries", "app_installs"} <= reached  # e-mail and phone keyed
    assert await demo_db.fetchval(logs, DEMO_SUBJECT.email) == 0
