"""Suspension and consent withdrawal end to end on the demo data (PIPA Art. 37)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from app.db import Database
from app.demo.load import DEMO_SUBJECT
from app.outbox.worker import Worker
from tests.support.lifecycle import AGENT, OFFICER, Subject, make_subject, propose_refusal, staff
from tests.support.servers import RecordingServer
from tests.test_correction_flow import (  # noqa: F401 - fixtures
    DEMO_PHONE,
    approve,
    deliveries,
    demo,
    notices,
    receiver,
    rows,
    secrets,
    settings_overrides,
    status,
)


async def submit(
    client: httpx.AsyncClient, subject: Subject, request_type: str, purposes: list[str]
) -> str:
    response = await client.post(
        "/v1/requests", json={"type": request_type, "purposes": purposes}, headers=subject.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def allowed(client: httpx.AsyncClient, app: FastAPI, purpose: str) -> bool:
    response = await client.post(
        "/v1/usage-checks",
        json={"identifiers": {"phone": DEMO_SUBJECT.phone}, "purpose": purpose},
        headers=staff(app, "service", sub="svc-hub"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert all(reason["code"] == "processing_suspended" for reason in body["reasons"])
    return bool(body["allowed"])


async def detail(client: httpx.AsyncClient, app: FastAPI, request_id: str) -> dict[str, Any]:
    response = await client.get(
        f"/v1/staff/requests/{request_id}", headers=staff(app, *OFFICER, sub="officer-1")
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_suspension_blocks_only_the_named_purposes(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    receiver: RecordingServer,  # noqa: F811
    secrets: dict[str, str],  # noqa: F811
) -> None:
    before = await deliveries(db)
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "suspension", ["marketing", "app_service"])
    assert await allowed(client, app, "marketing")  # no provisional suspension at intake
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert not await allowed(client, app, "marketing")
    assert not await allowed(client, app, "app_service")
    for purpose in ("delivery", "customs_clearance", "counseling", "service_logs"):
        assert await allowed(client, app, purpose)
    assert (await deliveries(db)) == before  # a suspension destroys nothing
    marketing = await rows(db, "SELECT count(*) AS n FROM demo.marketing_contacts WHERE id = 1")
    assert marketing[0]["n"] == 1
    got = notices(receiver, secrets)
    assert list(got) == ["lguplus"]  # app installs were handed to no one
    event = got["lguplus"][0]
    assert event["type"] == "processing.suspended"
    assert event["data"] == {"records": [{"reference": "1", "purposes": ["marketing"]}]}


async def test_delivery_suspension_tells_each_carrier_its_own_parcels(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    receiver: RecordingServer,  # noqa: F811
    secrets: dict[str, str],  # noqa: F811
) -> None:
    before = await deliveries(db)
    mine = [
        r
        for r in before.values()
        if DEMO_SUBJECT.phone in (r["sender_phone"],) or r["recipient_phone"] == "01055550001"
    ]
    assert all(r["delivered_at"] is not None for r in mine)  # nothing in flight
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "suspension", ["delivery"])
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert not await allowed(client, app, "delivery")
    await worker.drain()
    got = notices(receiver, secrets)
    expected: dict[str, set[str]] = {}
    for r in mine:
        expected.setdefault(r["carrier_code"], set()).add(r["tracking_no"])
    expected.setdefault("sf-express", set()).add("IR202609000001")
    expected["yuhan-technos"] = {"IR202609000001"}
    assert set(got) == set(expected)
    for code, events in got.items():
        records = events[0]["data"]["records"]
        assert {r["reference"] for r in records} == expected[code]
        assert all(r["purposes"] == ["delivery"] for r in records)


async def test_in_flight_delivery_is_a_partial_refusal_under_37_2_4(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    receiver: RecordingServer,  # noqa: F811
    secrets: dict[str, str],  # noqa: F811
) -> None:
    async with db.transaction() as session:
        await session.execute(
            sa.text(
                "UPDATE demo.deliveries SET delivered_at = NULL"
                " WHERE id = (SELECT min(id) FROM demo.deliveries WHERE sender_phone = :p)"
            ),
            {"p": DEMO_SUBJECT.phone},
        )
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "suspension", ["delivery", "marketing"])
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "partially_completed"
    assert await allowed(client, app, "delivery")  # the parcel under way keeps moving
    assert not await allowed(client, app, "marketing")
    found = await detail(client, app, request_id)
    assert [(r["item"], r["ground"]) for r in found["fulfilment_refusals"]] == [
        ("delivery", "pipa_37_2_4")
    ]
    result = found["result"]
    assert result["suspended_purposes"] == ["marketing"]
    assert result["refused_purposes"] == ["delivery"]
    assert "계약" in result["note"]["ko"] and "end the contract" in result["note"]["en"]
    await worker.drain()
    assert list(notices(receiver, secrets)) == ["lguplus"]  # no carrier is told to stop


async def test_consent_withdrawal_destroys_marketing_only_data_and_suspends_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    receiver: RecordingServer,  # noqa: F811
    secrets: dict[str, str],  # noqa: F811
) -> None:
    before = await deliveries(db)
    others = await rows(db, "SELECT count(*) AS n FROM demo.marketing_contacts WHERE id <> 1")
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "consent_withdrawal", ["marketing"])
    assert not await allowed(client, app, "marketing")  # provisional from intake
    assert await allowed(client, app, "delivery")
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert not await allowed(client, app, "marketing")
    mine = await rows(db, "SELECT count(*) AS n FROM demo.marketing_contacts WHERE id = 1")
    assert mine[0]["n"] == 0
    left = await rows(db, "SELECT count(*) AS n FROM demo.marketing_contacts WHERE id <> 1")
    assert left == others
    assert (await deliveries(db)) == before
    suspensions = await rows(
        db,
        "SELECT purpose, consent_withdrawal, lifted_at FROM processing_suspension"
        " WHERE request_id = CAST(:r AS uuid)",
        r=request_id,
    )
    assert {(s["purpose"], s["consent_withdrawal"], s["lifted_at"]) for s in suspensions} == {
        ("marketing", True, None)
    }
    assert (await detail(client, app, request_id))["result"]["records_erased"] == 1
    got = notices(receiver, secrets)
    assert got["lguplus"][0]["type"] == "processing.suspended"
    assert got["lguplus"][0]["data"] == {"records": [{"reference": "1", "purposes": ["marketing"]}]}


async def test_withdrawing_a_consent_withdrawal_lifts_the_provisional_suspension(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, db: Database
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "consent_withdrawal", ["marketing"])
    assert not await allowed(client, app, "marketing")
    withdrawn = await client.post(f"/v1/requests/{request_id}/withdraw", headers=subject.headers)
    assert withdrawn.status_code == 200, withdrawn.text
    assert await allowed(client, app, "marketing")
    await worker.drain()
    mine = await rows(db, "SELECT count(*) AS n FROM demo.marketing_contacts WHERE id = 1")
    assert mine[0]["n"] == 1


async def test_refused_suspension_suspends_nothing(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "consent_withdrawal", ["marketing"])
    await client.post(f"/v1/staff/requests/{request_id}/review", headers=staff(app, *AGENT))
    await propose_refusal(app, client, request_id, {"ground": "identity_not_verified"})
    refused = await client.post(
        f"/v1/staff/requests/{request_id}/refuse",
        json={"ground": "identity_not_verified", "explanation": "본인 확인이 되지 않았습니다."},
        headers=staff(app, *OFFICER, sub="officer-1"),
    )
    assert refused.status_code == 200, refused.text
    assert await allowed(client, app, "marketing")
    await worker.drain()
    assert await allowed(client, app, "marketing")


async def test_withdrawal_refused_in_part_ends_that_provisional_suspension(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, db: Database
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "consent_withdrawal", ["marketing", "app_service"])
    assert not await allowed(client, app, "marketing")
    officer = staff(app, *OFFICER, sub="officer-1")
    await client.post(f"/v1/staff/requests/{request_id}/review", headers=officer)
    await propose_refusal(
        app, client, request_id, {"refused_items": [{"item": "marketing", "ground": "pipa_37_2_1"}]}
    )
    approved = await client.post(
        f"/v1/staff/requests/{request_id}/approve",
        json={
            "refused_items": [{"item": "marketing", "ground": "pipa_37_2_1"}],
            "explanation": "법령상 의무 이행을 위해 필요합니다.",
        },
        headers=officer,
    )
    assert approved.status_code == 200, approved.text
    await worker.drain()
    assert await status(client, subject, request_id) == "partially_completed"
    assert await allowed(client, app, "marketing")
    assert not await allowed(client, app, "app_service")
    mine = await rows(db, "SELECT count(*) AS n FROM demo.marketing_contacts WHERE id = 1")
    assert mine[0]["n"] == 1  # nothing destroyed for a refused withdrawal


async def test_consent_withdrawal_keeps_what_the_law_still_requires_separated(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    receiver: RecordingServer,  # noqa: F811
) -> None:
    # A marketing consent given a month ago: advertising records are kept 6 months (policy §2).
    async with db.transaction() as session:
        await session.execute(
            sa.text(
                "UPDATE demo.marketing_contacts SET created_at = :at, opted_in_at = :at"
                " WHERE id = 1"
            ),
            {"at": app.state.clock.now() - timedelta(days=30)},
        )
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "consent_withdrawal", ["marketing"])
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert (await rows(db, "SELECT count(*) AS n FROM demo.marketing_contacts WHERE id = 1")) == [
        {"n": 0}
    ]
    kept = await rows(
        db,
        "SELECT collection, record_key, destroy_after FROM retained_record"
        " WHERE request_id = CAST(:r AS uuid)",
        r=request_id,
    )
    assert [(row["collection"], row["record_key"]) for row in kept] == [("marketing_contacts", "1")]
    result = (await detail(client, app, request_id))["result"]
    [entry] = result["kept"]
    assert entry["rule"] == "advertising" and "phone" in entry["items"]
    assert entry["destroy_after"].startswith("2027-04-27")  # 30 days ago + 6 months

    # After its period the copy is destroyed like any retained record.
    app.state.clock.advance(timedelta(days=200))
    await worker.run_periodic()
    assert await rows(db, "SELECT count(*) AS n FROM retained_record") == [{"n": 0}]


async def test_a_retried_withdrawal_does_not_copy_twice(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, db: Database
) -> None:
    async with db.transaction() as session:
        await session.execute(
            sa.text("UPDATE demo.marketing_contacts SET created_at = :at WHERE id = 1"),
            {"at": app.state.clock.now() - timedelta(days=30)},
        )
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "consent_withdrawal", ["marketing"])
    await approve(app, client, request_id)
    # Run the fulfilment job twice before anything is applied (a worker crash and a retry).
    worker.registry.handlers.pop("job:fulfil.apply")
    await worker.drain()
    async with db.transaction() as session:
        await session.execute(
            sa.text(
                "UPDATE outbox_message SET status = 'pending', next_attempt_at = :now"
                " WHERE topic = 'fulfil.consent_withdrawal'"
            ),
            {"now": app.state.clock.now()},
        )
    await worker.drain()
    assert await rows(db, "SELECT count(*) AS n FROM retained_record") == [{"n": 1}]
