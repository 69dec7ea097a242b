"""Correction end to end on the demo data: restriction from intake, connectors, notices, completion.

Real PostgreSQL with the demo schema, the demo data map, processors registered through the API
with loopback webhook receivers (signatures verified with ``standardwebhooks``), and an http
source on 127.0.0.1 for the failure paths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from fastapi import FastAPI

from app.clock import FrozenClock
from app.datamap.loader import parse_datamap
from app.db import Database
from app.demo.load import DEMO_SUBJECT, demo_datamap_text
from app.demo.processors import PROCESSORS
from app.outbox.worker import Worker
from tests.support.demo import demo_settings, fresh_demo
from tests.support.dsr_source import ReferenceSource, SourceRecord
from tests.support.lifecycle import AGENT, OFFICER, Subject, make_subject, propose_refusal, staff
from tests.support.servers import RecordingServer
from tests.support.webhooks import register, verified

DEMO_PHONE = "+821055550001"
NEW_PHONE = "+821055550009"
NEW_ADDRESS = "부산광역시 해운대구 센텀중앙로 97, 1501호"


@pytest.fixture
async def demo(database_url: str) -> AsyncIterator[str]:
    """A fresh demo schema per test: corrections change it."""
    async with fresh_demo(database_url, subjects=8) as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture
def settings_overrides(demo: str, tmp_path: Path, gateway: RecordingServer) -> dict[str, Any]:
    return demo_settings(
        tmp_path,
        gateway,
        allow_private_webhooks=True,
        webhook_processor_cache_seconds=0,
    )


@pytest.fixture
async def secrets(
    client: httpx.AsyncClient, staff_headers: Any, receiver: RecordingServer
) -> dict[str, str]:
    """Every demo processor registered, each with its own loopback endpoint."""
    out = {}
    for processor in PROCESSORS:
        created = await register(
            client,
            staff_headers,
            code=processor.code,
            url=f"{receiver.url}/{processor.code}",
            nation=processor.nation or "KR",
        )
        out[processor.code] = created["secret"]
    return out


async def rows(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with db.sessionmaker() as session:
        result = await session.execute(sa.text(sql), params)
        return [dict(row._mapping) for row in result]


async def deliveries(db: Database) -> dict[int, dict[str, Any]]:
    found = await rows(db, "SELECT * FROM demo.deliveries ORDER BY id")
    return {row["id"]: row for row in found}


async def submit(client: httpx.AsyncClient, subject: Subject, corrections: list[Any]) -> str:
    response = await client.post(
        "/v1/requests",
        json={"type": "correction", "corrections": corrections},
        headers=subject.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def approve(app: FastAPI, client: httpx.AsyncClient, request_id: str) -> None:
    agent = staff(app, *AGENT)
    review = await client.post(f"/v1/staff/requests/{request_id}/review", headers=agent)
    assert review.status_code == 200, review.text
    approved = await client.post(f"/v1/staff/requests/{request_id}/approve", json={}, headers=agent)
    assert approved.status_code == 200, approved.text


async def usage(
    client: httpx.AsyncClient, app: FastAPI, items: list[str], purpose: str = "delivery"
) -> dict[str, Any]:
    response = await client.post(
        "/v1/usage-checks",
        json={"identifiers": {"phone": DEMO_SUBJECT.phone}, "purpose": purpose, "items": items},
        headers=staff(app, "service", sub="svc-hub"),
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def status(client: httpx.AsyncClient, subject: Subject, request_id: str) -> str:
    detail = await client.get(f"/v1/requests/{request_id}", headers=subject.headers)
    return str(detail.json()["status"])


def notices(receiver: RecordingServer, secrets: dict[str, str]) -> dict[str, list[Any]]:
    """Webhooks received per processor, each verified with that processor's secret."""
    out: dict[str, list[Any]] = defaultdict(list)
    for item in receiver.received:
        code = item.path.strip("/")
        out[code].append(verified(secrets[code], item))
    return out


async def test_phone_correction_everywhere_with_restriction_and_notices(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    receiver: RecordingServer,
    gateway: RecordingServer,
    secrets: dict[str, str],
) -> None:
    before = await deliveries(db)
    sent = {k for k, r in before.items() if r["sender_phone"] == DEMO_SUBJECT.phone}
    received = {k for k, r in before.items() if r["recipient_phone"] == "01055550001"}
    assert len(sent) == 5 and len(received) == 3  # one of the parcels sent is under way
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, [{"item": "phone", "new_value": "010-5555-0009"}])

    # From intake: the phone is "not used or provided"; other items stay usable.
    blocked = await usage(client, app, ["phone"])
    assert blocked["allowed"] is False
    assert blocked["reasons"][0]["code"] == "correction_pending"
    assert blocked["reasons"][0]["request_id"] == request_id
    assert (await usage(client, app, ["address"]))["allowed"] is True
    await worker.drain()  # nothing to fulfil before approval
    assert (await deliveries(db)) == before

    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert (await usage(client, app, ["phone"]))["allowed"] is True

    after = await deliveries(db)
    for key, row in after.items():
        old = before[key]
        if key in sent:
            assert row["sender_phone"] == "010-5555-0009"  # the column's own format
            assert row["recipient_phone"] == old["recipient_phone"]  # the other party's
        elif key in received:
            assert row["recipient_phone"] == "01055550009"
            assert row["sender_phone"] == old["sender_phone"]
        else:
            assert row == old
    others = await rows(
        db,
        "SELECT (SELECT contact FROM demo.intl_reservations WHERE id = 1) AS intl,"
        " (SELECT contact_phone FROM demo.email_counseling WHERE id = 1) AS counseling,"
        " (SELECT phone FROM demo.app_installs WHERE id = 1) AS app,"
        " (SELECT mobile FROM demo.marketing_contacts WHERE id = 1) AS marketing",
    )
    assert others[0] == {
        "intl": NEW_PHONE,
        "counseling": "010-5555-0009",
        "app": NEW_PHONE,
        "marketing": "01055550009",
    }

    # Each processor that received an affected record: only its references, only the phone.
    held: dict[str, set[str]] = defaultdict(set)
    for key in sent | received:
        held[before[key]["carrier_code"]].add(before[key]["tracking_no"])
    held["sf-express"].add("IR202609000001")  # the intl carrier received the phone
    held["lguplus"].add("1")  # the SMS agency received the marketing mobile (record key)
    held["channel-corp"].add("1")  # the app install, provided with the subject's consent
    await worker.drain()
    got = notices(receiver, secrets)
    assert set(got) == set(held)  # yuhan-technos (customs broker) never had the phone
    for code, events in got.items():
        assert len(events) == 1
        assert events[0]["type"] == "personal_data.corrected"
        records = events[0]["data"]["records"]
        assert {record["reference"] for record in records} == held[code]
        assert all(record["items"] == {"phone": NEW_PHONE} for record in records)
    templates = [r.json()["template"] for r in gateway.requests("/sms")]
    assert "request_completed" in templates


async def test_address_correction_as_recipient_of_one_record(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    receiver: RecordingServer,
    secrets: dict[str, str],
) -> None:
    before = await deliveries(db)
    mine = [k for k, r in before.items() if r["recipient_phone"] == "01055550001"]
    target = before[mine[0]]
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(
        client,
        subject,
        [{"item": "address", "new_value": NEW_ADDRESS, "record_ref": target["tracking_no"]}],
    )
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    after = await deliveries(db)
    for key, row in after.items():
        if key == target["id"]:
            assert row["recipient_address"] == NEW_ADDRESS
            assert row["sender_address"] == target["sender_address"]
            assert row["sender_name"] == target["sender_name"]
        else:
            assert row == before[key]
    got = notices(receiver, secrets)
    assert list(got) == [target["carrier_code"]]
    assert got[target["carrier_code"]][0]["data"] == {
        "records": [{"reference": target["tracking_no"], "items": {"address": NEW_ADDRESS}}]
    }


async def test_name_correction_as_sender_leaves_the_recipients_alone(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, db: Database
) -> None:
    before = await deliveries(db)
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, [{"item": "name", "new_value": "김하람"}])
    await approve(app, client, request_id)
    await worker.drain()
    after = await deliveries(db)
    for key, row in after.items():
        old = before[key]
        if old["sender_phone"] == DEMO_SUBJECT.phone:
            assert (row["sender_name"], row["recipient_name"]) == ("김하람", old["recipient_name"])
        elif old["recipient_phone"] == "01055550001":
            assert (row["recipient_name"], row["sender_name"]) == ("김하람", old["sender_name"])
        else:
            assert row == old


@pytest.mark.parametrize("how", ["refuse", "subject_withdraws", "staff_withdraws"])
async def test_ending_a_correction_without_fulfilment_lifts_the_restriction(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, db: Database, how: str
) -> None:
    before = await deliveries(db)
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, [{"item": "address", "new_value": NEW_ADDRESS}])
    assert (await usage(client, app, ["address"]))["allowed"] is False
    if how == "refuse":
        agent = staff(app, *AGENT)
        await client.post(f"/v1/staff/requests/{request_id}/review", headers=agent)
        await propose_refusal(app, client, request_id, {"ground": "identity_not_verified"})
        refused = await client.post(
            f"/v1/staff/requests/{request_id}/refuse",
            json={"ground": "identity_not_verified", "explanation": "본인 확인이 되지 않았습니다."},
            headers=staff(app, *OFFICER, sub="officer-1"),
        )
        assert refused.status_code == 200, refused.text
    elif how == "subject_withdraws":
        withdrawn = await client.post(
            f"/v1/requests/{request_id}/withdraw", headers=subject.headers
        )
        assert withdrawn.status_code == 200, withdrawn.text
    else:
        withdrawn = await client.post(
            f"/v1/staff/requests/{request_id}/withdraw",
            json={"reason": "고객이 전화로 철회했습니다."},
            headers=staff(app, *AGENT),
        )
        assert withdrawn.status_code == 200, withdrawn.text
    assert (await usage(client, app, ["address"]))["allowed"] is True
    await worker.drain()
    assert (await deliveries(db)) == before


async def test_staff_intake_restricts_with_every_identifier(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    intake = await client.post(
        "/v1/staff/requests",
        json={
            "request": {
                "type": "correction",
                "corrections": [{"item": "address", "new_value": NEW_ADDRESS}],
            },
            "identifiers": {"phone": DEMO_SUBJECT.phone, "email": DEMO_SUBJECT.email},
            "intake_channel": "phone",
            "verification": {"method": "agent", "check": "callback_to_number_on_record"},
        },
        headers=staff(app, *AGENT),
    )
    assert intake.status_code == 201, intake.text
    assert (await usage(client, app, ["address"]))["allowed"] is False
    by_email = await client.post(
        "/v1/usage-checks",
        json={"identifiers": {"email": DEMO_SUBJECT.email}, "purpose": "marketing"},
        headers=staff(app, "service", sub="svc-hub"),
    )
    assert by_email.json()["allowed"] is False


# --- failures: a source down before anything is written; a source failing mid-correction ------

CRM_TOKEN = "crm-token-for-tests"


def with_crm(url: str) -> Any:
    """The demo map plus an internal CRM over http (after the demo source in source order)."""
    data = yaml.safe_load(demo_datamap_text())
    data["sources"]["crm"] = {"connector": "http", "base_url": url, "token": CRM_TOKEN}
    data["collections"].append(
        {
            "name": "crm_contacts",
            "label": {"ko": "고객 연락처", "en": "Customer contacts"},
            "source": "crm",
            "resource": "contacts",
            "record_key": "id",
            "purposes": ["counseling"],
            "retention": {"rule": "complaints", "clock_column": "created_at"},
            "erasure": "null",
            "processors": [{"column": "agency", "reference_column": "ref"}],
            "roles": {
                "customer": {
                    "match": [{"column": "phone", "identifier": "phone"}],
                    "fields": [{"column": "phone", "item": "phone"}],
                }
            },
        }
    )
    return parse_datamap(data)


@pytest.fixture
def crm() -> Iterator[ReferenceSource]:
    record = SourceRecord(
        resource="contacts",
        key="C-1",
        matches={"customer": {"phone": DEMO_PHONE}},
        fields={"customer": {"phone": DEMO_PHONE}},
        handovers=[{"processor": "mnwise", "reference": "MN-77"}],
    )
    with ReferenceSource(CRM_TOKEN, [record]) as source:
        yield source


async def test_source_down_before_anything_is_written_changes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    clock: FrozenClock,
    crm: ReferenceSource,
) -> None:
    worker.ctx.datamap = with_crm(crm.url)
    before = await deliveries(db)
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, [{"item": "phone", "new_value": "010-5555-0009"}])
    crm.down = True
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "in_progress"
    assert (await deliveries(db)) == before
    assert crm.records[0].fields["customer"]["phone"] == DEMO_PHONE
    assert (await usage(client, app, ["phone"]))["allowed"] is False
    webhooks = await rows(db, "SELECT count(*) AS n FROM outbox_message WHERE kind = 'webhook'")
    assert webhooks[0]["n"] == 0

    crm.down = False
    clock.advance(timedelta(minutes=5))
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert crm.records[0].fields["customer"]["phone"] == NEW_PHONE


async def test_failure_mid_correction_retries_the_same_plan_and_converges(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    clock: FrozenClock,
    crm: ReferenceSource,
    receiver: RecordingServer,
    secrets: dict[str, str],
) -> None:
    worker.ctx.datamap = with_crm(crm.url)
    before = await deliveries(db)
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, [{"item": "phone", "new_value": "010-5555-0009"}])
    crm.fail_next_change = True  # the CRM answers 500 to `correct` once, applying nothing
    await approve(app, client, request_id)
    await worker.drain()

    # The demo source applied its transaction, the CRM none of its batch; nothing else moved:
    # the restriction holds, no processor was told, the request is still in progress.
    assert await status(client, subject, request_id) == "in_progress"
    assert crm.records[0].fields["customer"]["phone"] == DEMO_PHONE
    corrected = [r for r in (await deliveries(db)).values() if r != before[r["id"]]]
    assert len(corrected) == 8 and all(
        "0009" in (r["sender_phone"] + r["recipient_phone"]) for r in corrected
    )
    assert (await usage(client, app, ["phone"]))["allowed"] is False
    counts = await rows(
        db,
        "SELECT topic, status, count(*) AS n FROM outbox_message"
        " WHERE kind IN ('job', 'webhook') GROUP BY topic, status ORDER BY topic",
    )
    assert {(c["topic"], c["status"]) for c in counts} == {
        ("fulfil.correction", "delivered"),
        ("fulfil.apply", "pending"),
    }

    clock.advance(timedelta(minutes=5))
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert crm.records[0].fields["customer"]["phone"] == NEW_PHONE
    assert len([r for r in (await deliveries(db)).values() if r != before[r["id"]]]) == 8
    assert (await usage(client, app, ["phone"]))["allowed"] is True
    await worker.drain()
    got = notices(receiver, secrets)
    assert got["mnwise"][0]["data"] == {
        "records": [{"reference": "MN-77", "items": {"phone": NEW_PHONE}}]
    }
    assert all(len(events) == 1 for events in got.values())  # each processor told once


async def test_operator_retry_after_exhausted_attempts_finishes_the_same_plan(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    clock: FrozenClock,
    crm: ReferenceSource,
    receiver: RecordingServer,
    secrets: dict[str, str],
) -> None:
    worker.ctx.datamap = with_crm(crm.url)
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, [{"item": "phone", "new_value": "010-5555-0009"}])
    await approve(app, client, request_id)
    for _ in range(8):  # every attempt: the demo source applies (again), the CRM fails
        crm.fail_next_change = True
        await worker.drain()
        clock.advance(timedelta(hours=7))
    officer = staff(app, *OFFICER, sub="officer-1")
    found = await client.get(f"/v1/staff/requests/{request_id}", headers=officer)
    assert found.json()["status"] == "in_progress"
    assert found.json()["fulfilment"]["state"] == "failed"
    assert not receiver.received
    # The demo records were corrected by the first attempt and no longer match the old phone:
    # a fresh plan would miss them. The retry finishes the dead attempt's plan instead.
    retried = await client.post(
        f"/v1/staff/requests/{request_id}/retry-fulfilment", headers=officer
    )
    assert retried.status_code == 200, retried.text
    await worker.drain()
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert crm.records[0].fields["customer"]["phone"] == NEW_PHONE
    got = notices(receiver, secrets)
    assert {"hct", "yamato", "ninjavan", "hanjin", "sf-express", "dhlec-my", "mnwise"} <= set(got)
    assert all(len(events) == 1 for events in got.values())


async def test_partial_approval_corrects_only_the_granted_items_and_lifts_all(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, db: Database
) -> None:
    before = await deliveries(db)
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(
        client,
        subject,
        [{"item": "name", "new_value": "김하람"}, {"item": "address", "new_value": NEW_ADDRESS}],
    )
    officer = staff(app, *OFFICER, sub="officer-1")
    await client.post(f"/v1/staff/requests/{request_id}/review", headers=officer)
    await propose_refusal(
        app, client, request_id, {"refused_items": [{"item": "name", "ground": "policy_6_1"}]}
    )
    approved = await client.post(
        f"/v1/staff/requests/{request_id}/approve",
        json={
            "refused_items": [{"item": "name", "ground": "policy_6_1"}],
            "explanation": "이름 변경은 증빙 서류가 필요합니다.",
        },
        headers=officer,
    )
    assert approved.status_code == 200, approved.text
    await worker.drain()
    assert await status(client, subject, request_id) == "partially_completed"
    for key, row in (await deliveries(db)).items():
        old = before[key]
        if old["sender_phone"] == DEMO_SUBJECT.phone:
            assert row["sender_address"] == NEW_ADDRESS
            assert row["sender_name"] == old["sender_name"]
    assert (await usage(client, app, ["name", "address"]))["allowed"] is True
