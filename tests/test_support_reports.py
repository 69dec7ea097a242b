"""Record keeping and the clock: statistics, the CSV export, the daily digest, overdue alerts."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

from app.clock import FrozenClock
from app.outbox.worker import Worker
from tests.support.lifecycle import AGENT, BODIES, OFFICER, drive, make_subject, new_request, staff
from tests.support.servers import RecordingServer

KST = ZoneInfo("Asia/Seoul")


def kst(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=KST).astimezone(UTC)


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "auto_approve_access": False,
        "email_gateway_url": f"{gateway.url}/email",
        "sms_gateway_url": f"{gateway.url}/sms",
        "privacy_officer_email": "privacy@example.com",
        "staff_email_template": "{sub}@staff.example.com",
    }


async def by_phone(client: httpx.AsyncClient, app: FastAPI, phone: str, kind: str) -> str:
    response = await client.post(
        "/v1/staff/requests",
        json={
            "request": BODIES[kind],
            "identifiers": {"phone": phone},
            "intake_channel": "phone",
            "verification": {"method": "agent", "check": "callback_to_number_on_record"},
        },
        headers=staff(app, *AGENT),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def november(app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock) -> dict[str, str]:
    """The hand-computed fixture (all times KST; every type is due 10 days after receipt)."""
    back_to = clock.now()
    ids: dict[str, str] = {}

    async def at(when: datetime) -> None:
        clock.set(when)

    await at(kst(10, 31))  # G: received in October: outside the range
    ids["G"] = await new_request(client, await make_subject(app, "+821060000007"), "correction")
    await drive(app, ids["G"], "completed")
    await at(kst(11, 2))  # A: access, app, done 5 Nov: 3 days, on time
    ids["A"] = await new_request(client, await make_subject(app, "+821060000001"), "access")
    await at(kst(11, 3))  # B: deletion, phone, done 4 Nov: 1 day, on time
    ids["B"] = await by_phone(client, app, "010-6000-0002", "deletion")
    await at(kst(11, 4))
    await drive(app, ids["B"], "completed")
    await at(kst(11, 5))
    await drive(app, ids["A"], "completed")
    await at(kst(11, 10))  # C: correction, app, partly done 20 Nov (its due day): 10 days
    ids["C"] = await new_request(client, await make_subject(app, "+821060000003"), "correction")
    await at(kst(11, 11))  # D: suspension, app, refused 23 Nov: late (due 21 Nov)
    subject_d = await make_subject(app, "+821060000004")
    ids["D"] = await new_request(client, subject_d, "suspension")
    await at(kst(11, 12))  # E: consent withdrawal, phone, done 25 Nov: 13 days, late
    ids["E"] = await by_phone(client, app, "010-6000-0005", "consent_withdrawal")
    await at(kst(11, 20))
    await drive(app, ids["C"], "partially_completed")
    ids["F"] = await new_request(client, await make_subject(app, "+821060000006"), "deletion")
    await drive(app, ids["F"], "in_review")  # F: open
    await at(kst(11, 23))
    await drive(app, ids["D"], "refused")
    await at(kst(11, 24))  # D's subject objects; the officer dismisses it
    objection = await client.post(
        f"/v1/requests/{ids['D']}/objection",
        json={"reason": "다시 검토해 주세요"},
        headers=subject_d.headers,
    )
    assert objection.status_code == 201, objection.text
    decided = await client.post(
        f"/v1/staff/objections/{objection.json()['id']}/decide",
        json={"outcome": "dismissed", "explanation": "근거가 그대로입니다."},
        headers=staff(app, *OFFICER, sub="officer-2"),
    )
    assert decided.status_code == 200, decided.text
    await at(kst(11, 25))
    await drive(app, ids["E"], "completed")
    await at(kst(12, 1, 0) + timedelta(minutes=30))  # H: 1 Dec 00:30 KST: outside
    ids["H"] = await new_request(client, await make_subject(app, "+821060000008"), "access")
    clock.set(back_to.replace(month=12, day=2))
    return ids


async def test_statistics_against_a_hand_computed_month(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    await november(app, client, clock)
    officer = staff(app, *OFFICER, sub="officer-1")
    response = await client.get(
        "/v1/staff/statistics", params={"from": "2026-11-01", "to": "2026-11-30"}, headers=officer
    )
    assert response.status_code == 200, response.text
    figures = response.json()
    assert figures["total"] == 6
    assert figures["by_type"] == {
        "access": 1,
        "correction": 1,
        "deletion": 2,
        "suspension": 1,
        "consent_withdrawal": 1,
    }
    assert figures["by_channel"] == {"app": 4, "phone": 2, "counter": 0}
    assert {k: v for k, v in figures["by_outcome"].items() if v} == {
        "completed": 3,
        "partially_completed": 1,
        "refused": 1,
        "in_review": 1,
    }
    # Days to complete: A 3, B 1, C 10, E 13 -> median (3 + 10) / 2, p90 10 + 0.7 * 3.
    assert figures["completed"] == 4
    assert figures["median_days_to_complete"] == 6.5
    assert figures["p90_days_to_complete"] == pytest.approx(12.1)
    # Answered: A, B, C on time; D (refused 23 Nov, due 21 Nov) and E (25 Nov, due 22 Nov) late.
    assert (figures["answered"], figures["answered_on_time"]) == (5, 3)
    # F, still in review past its due day (30 Nov; now 2 Dec), is late already: 3 of 6.
    assert figures["overdue_unanswered"] == 1
    assert figures["share_on_time"] == 0.5
    assert figures["objections"] == {"total": 1, "open": 0, "upheld": 0, "dismissed": 1}

    empty = await client.get(
        "/v1/staff/statistics", params={"from": "2025-01-01", "to": "2025-01-31"}, headers=officer
    )
    assert empty.json()["median_days_to_complete"] is None and empty.json()["share_on_time"] is None
    backwards = await client.get(
        "/v1/staff/statistics", params={"from": "2026-11-30", "to": "2026-11-01"}, headers=officer
    )
    assert backwards.status_code == 422 and backwards.json()["code"] == "validation-failed"
    missing = await client.get(
        "/v1/staff/statistics", params={"from": "2026-11-01"}, headers=officer
    )
    assert missing.status_code == 422


async def test_the_export_is_csv_without_personal_data_unless_an_officer_asks(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    ids = await november(app, client, clock)
    officer, admin = staff(app, *OFFICER, sub="officer-1"), staff(app, "admin", sub="root")
    month = {"from": "2026-11-01", "to": "2026-11-30"}
    response = await client.get("/v1/staff/export", params=month, headers=admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    text = response.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 6
    by_ref = {row["reference"]: row for row in rows}
    c = by_ref[ids["C"].replace("-", "")[:8].upper()]
    assert (c["type"], c["channel"], c["outcome"], c["grounds"]) == (
        "correction",
        "app",
        "partially_completed",
        "policy_6_3",
    )
    assert (c["days_taken"], c["on_time"]) == ("10", "yes")
    assert c["received"] == "2026-11-10T10:00:00+09:00"
    d = by_ref[ids["D"].replace("-", "")[:8].upper()]
    assert (d["outcome"], d["grounds"], d["days_taken"], d["on_time"]) == (
        "refused",
        "identity_not_verified",
        "12",
        "no",
    )
    f = by_ref[ids["F"].replace("-", "")[:8].upper()]
    # F is still open and past its due day (30 Nov): not on time already.
    assert (f["days_taken"], f["on_time"], f["completed"]) == ("", "no", "")
    assert "phone" not in rows[0] and "+8210" not in text

    refused = await client.get(
        "/v1/staff/export", params=month | {"personal": "true"}, headers=admin
    )
    assert refused.status_code == 403
    agent = await client.get("/v1/staff/export", params=month, headers=staff(app, *AGENT))
    assert agent.status_code == 403
    for bad in (
        {"from": "2026-11-30", "to": "2026-11-01"},  # ends before it starts
        {"from": "2024-01-01", "to": "2026-11-30"},  # over two years
        {"from": "2026-11-01"},  # no end
    ):
        refused_range = await client.get("/v1/staff/export", params=bad, headers=officer)
        assert refused_range.status_code == 422, bad
        assert refused_range.headers["content-type"].startswith("application/problem+json")
    personal = await client.get(
        "/v1/staff/export", params=month | {"personal": "true"}, headers=officer
    )
    assert personal.status_code == 200
    personal_rows = list(csv.DictReader(io.StringIO(personal.content.decode("utf-8-sig"))))
    assert {row["phone"] for row in personal_rows} >= {"+821060000002", "+821060000003"}
    audit = await client.get("/v1/audit", params={"action": "requests.exported"}, headers=officer)
    assert [entry["details"]["personal"] for entry in audit.json()["items"]] == [True, False]


def digests(gateway: RecordingServer) -> list[tuple[str, str]]:
    return sorted(
        (item.json()["to"], item.json()["template"])
        for item in gateway.requests("/email")
        if item.json()["template"] in ("sla_digest", "request_overdue")
    )


async def test_the_digest_goes_once_a_day_however_many_workers_run(
    app: FastAPI,
    client: httpx.AsyncClient,
    clock: FrozenClock,
    worker: Worker,
    gateway: RecordingServer,
) -> None:
    start = clock.now()
    clock.set(start - timedelta(days=8))  # due end of 28 Nov: within 2 days
    soon = await new_request(client, await make_subject(app, "+821070000001"), "correction")
    clock.set(start)
    await new_request(client, await make_subject(app, "+821070000002"), "deletion")
    await client.post(f"/v1/staff/requests/{soon}/take", headers=staff(app, *AGENT, sub="kim"))
    await client.post(
        "/v1/staff/requests/bulk",
        json={"action": "take", "ids": [soon]},
        headers=staff(app, *AGENT, sub="lee"),
    )  # lee owns nothing: kim keeps it
    other = Worker(worker.ctx, worker.registry)
    early = start.replace(hour=23) - timedelta(days=1)  # 08:00 KST: before the digest hour
    clock.set(early)
    await asyncio.gather(worker.run_periodic(), other.run_periodic())
    await worker.drain()
    assert digests(gateway) == []

    clock.set(start)
    for _ in range(3):  # each worker remembers its own runs; the database decides
        await asyncio.gather(worker.run_periodic(), other.run_periodic())
        other = Worker(worker.ctx, worker.registry)
        await worker.drain()
    assert digests(gateway) == [
        ("kim@staff.example.com", "sla_digest"),
        ("privacy@example.com", "sla_digest"),
    ]
    officer_mail = next(
        item.json()
        for item in gateway.requests("/email")
        if item.json()["to"] == "privacy@example.com"
    )
    assert "기한 경과 0건" in officer_mail["subject"]
    assert soon.replace("-", "")[:8].upper() in officer_mail["body"]
    assert "+8210" not in officer_mail["body"]

    clock.set(start + timedelta(days=1))  # the next day: one more each
    await asyncio.gather(worker.run_periodic(), Worker(worker.ctx, worker.registry).run_periodic())
    await worker.drain()
    assert len(digests(gateway)) == 4


async def test_an_overdue_request_is_alerted_once_per_due_date(
    app: FastAPI,
    client: httpx.AsyncClient,
    clock: FrozenClock,
    worker: Worker,
    gateway: RecordingServer,
) -> None:
    start = clock.now()
    clock.set(start - timedelta(days=11))
    late = await new_request(client, await make_subject(app, "+821080000001"), "access")
    clock.set(start)
    await client.post(f"/v1/staff/requests/{late}/take", headers=staff(app, *AGENT, sub="kim"))
    for _ in range(3):
        await asyncio.gather(
            worker.run_periodic(), Worker(worker.ctx, worker.registry).run_periodic()
        )
        await worker.drain()
    overdue = [pair for pair in digests(gateway) if pair[1] == "request_overdue"]
    assert overdue == [
        ("kim@staff.example.com", "request_overdue"),
        ("privacy@example.com", "request_overdue"),
    ]
    officer = staff(app, *OFFICER, sub="officer-1")
    history = (await client.get(f"/v1/staff/requests/{late}", headers=officer)).json()["history"]
    assert [event["action"] for event in history].count("overdue_alerted") == 1
    # The next day it is still overdue (a passed due date cannot be postponed): no second alert.
    clock.set(start + timedelta(days=1))
    await asyncio.gather(worker.run_periodic(), Worker(worker.ctx, worker.registry).run_periodic())
    await worker.drain()
    assert len([p for p in digests(gateway) if p[1] == "request_overdue"]) == 2
