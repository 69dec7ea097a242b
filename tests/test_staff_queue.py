"""The support center: keyset pages, filters, counts, audited reads, intake, the audit trail."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.audit import trail
from app.audit.actors import CLIENT_IP_PURPOSE
from app.clock import FrozenClock
from app.db import Database
from tests.support.lifecycle import AGENT, OFFICER, drive, make_subject, new_request, staff

TYPES = ["access", "correction", "deletion", "suspension", "consent_withdrawal"]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auto_approve_access": False}


async def requests_over_time(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock, count: int, start: int = 0
) -> list[str]:
    ids = []
    for n in range(start, start + count):
        subject = await make_subject(app, f"+8210{5000_0000 + n}")
        ids.append(await new_request(client, subject, TYPES[n % len(TYPES)]))
        clock.advance(timedelta(hours=7))
    return ids


async def test_keyset_pages_are_stable_under_inserts(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    start = clock.now()
    original = await requests_over_time(app, client, clock, 9)
    agent = staff(app, *AGENT)
    seen: list[tuple[str, str]] = []
    cursor = None
    inserted = 0
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/staff/requests", params=params, headers=agent)).json()
        seen.extend((row["due_at"], row["id"]) for row in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Between pages: one request due before everything seen, one due after.
        now = clock.now()
        clock.set(start - timedelta(days=2))
        await requests_over_time(app, client, clock, 1, start=100 + inserted)
        clock.set(now + timedelta(days=1))
        await requests_over_time(app, client, clock, 1, start=200 + inserted)
        inserted += 1
    ids = [rid for _due, rid in seen]
    assert len(ids) == len(set(ids))
    assert set(original) <= set(ids)
    assert seen == sorted(seen)  # one walk in (due_at, id) order, never back
    assert inserted == 2


async def test_filters_and_counts(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    ids = await requests_over_time(app, client, clock, 5)
    await drive(app, ids[1], "in_review")
    await drive(app, ids[2], "refused")
    agent = staff(app, *AGENT)

    async def listed(**params: Any) -> list[str]:
        response = await client.get("/v1/staff/requests", params=params, headers=agent)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["items"]]

    async def listed_set(**params: Any) -> set[str]:
        return set(await listed(**params))

    assert await listed_set(status="received") == {ids[0], ids[3], ids[4]}
    assert await listed_set(status=["in_review", "refused"]) == {ids[1], ids[2]}
    assert await listed(type="deletion") == [ids[2]]
    assert await listed_set(type=["access", "suspension"]) == {ids[0], ids[3]}
    # Received 10:00, 17:00, 00:00 (27th), 07:00, 14:00 KST.
    assert await listed_set(received_from="2026-11-27T00:00:00+09:00") == set(ids[2:])
    assert await listed_set(received_to="2026-11-27T00:00:00") == set(ids[:2])  # Seoul time
    page = (await client.get("/v1/staff/requests", headers=agent)).json()
    assert page["counts"]["by_status"]["received"] == 3
    assert page["counts"]["by_status"]["refused"] == 1
    assert page["counts"]["by_status"]["completed"] == 0
    row = page["items"][0]
    assert row["reference"] == row["id"].replace("-", "")[:8].upper()
    assert "body" not in row and "identifiers" not in row
    bad = await client.get("/v1/staff/requests?cursor=not-a-cursor", headers=agent)
    assert bad.status_code == 422 and bad.json()["code"] == "validation-failed"
    wrong = await client.get("/v1/staff/requests?status=lost", headers=agent)
    assert wrong.status_code == 422


async def test_closed_statuses_are_estimated_on_a_large_table_and_said_so(
    app: FastAPI,
    client: httpx.AsyncClient,
    clock: FrozenClock,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Millions of closed requests cannot be counted row by row on every page: above the limit
    # they come from the planner's statistics, flagged; open statuses stay exact.
    from app.requests import queue

    ids = await requests_over_time(app, client, clock, 4)
    await drive(app, ids[0], "refused")
    await drive(app, ids[1], "refused")
    async with db.transaction() as session:
        await session.execute(sa.text("ANALYZE dsr_request"))
    agent = staff(app, *AGENT)
    exact = (await client.get("/v1/staff/requests", headers=agent)).json()["counts"]
    assert exact["estimated"] == []
    assert exact["by_status"]["refused"] == 2 and exact["by_status"]["received"] == 2
    monkeypatch.setattr(queue, "EXACT_COUNT_LIMIT", 3)
    estimated = (await client.get("/v1/staff/requests", headers=agent)).json()["counts"]
    assert "refused" in estimated["estimated"] and "received" not in estimated["estimated"]
    assert estimated["by_status"]["refused"] == 2  # 2 of the 4 rows ANALYZE saw
    assert estimated["by_status"]["received"] == 2  # exact


async def test_every_staff_read_is_audited_with_role_and_ip(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app, "+821012345678")
    request_id = await new_request(client, subject, "correction")
    detail = await client.get(
        f"/v1/staff/requests/{request_id}", headers=staff(app, *AGENT, sub="agent-7")
    )
    assert detail.status_code == 200
    body = detail.json()
    assert body["identifiers"] == [{"kind": "phone", "masked": "010-****-5678"}]
    assert body["body"]["corrections"][0]["item"] == "address"
    assert [event["action"] for event in body["history"]] == ["submitted", "notice_queued"]
    await client.get("/v1/staff/requests", headers=staff(app, *AGENT, sub="agent-7"))
    async with db.sessionmaker() as session:
        rows = (
            await session.execute(
                sa.text(
                    "SELECT actor, role, action, target_id, client_ip, details::text "
                    "FROM audit_entry WHERE actor = 'staff:agent-7' ORDER BY id"
                )
            )
        ).all()
    # The address as a keyed hash (the same for both), never in clear.
    hashed = app.state.crypto.mac(CLIENT_IP_PURPOSE, "127.0.0.1")
    assert [(row[0], row[1], row[2], row[4]) for row in rows] == [
        ("staff:agent-7", "support_agent", "request.viewed", hashed),
        ("staff:agent-7", "support_agent", "requests.listed", hashed),
    ]
    assert rows[0][3] == request_id and request_id in rows[1][5]
    # The audit trail holds no personal data.
    async with db.sessionmaker() as session:
        dump = (
            await session.execute(sa.text("SELECT string_agg(details::text, ' ') FROM audit_entry"))
        ).scalar()
    assert "12345678" not in dump and "공항대로" not in dump


async def test_intake_by_an_agent_and_by_a_representative(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    agent = staff(app, *AGENT, sub="agent-3")
    by_phone = await client.post(
        "/v1/staff/requests",
        json={
            "request": {"type": "deletion", "categories": ["identity"]},
            "identifiers": {"phone": "010-3333-4444", "email": "kim@example.com"},
            "intake_channel": "phone",
            "verification": {"method": "agent", "check": "callback_to_number_on_record"},
        },
        headers=agent,
    )
    assert by_phone.status_code == 201, by_phone.text
    # The subject, verifying either identifier in the app later, sees the request.
    for value, kind in (("+821033334444", "phone"), ("kim@example.com", "email")):
        subject = await make_subject(app, value, kind)
        listed = await client.get("/v1/requests", headers=subject.headers)
        assert [item["id"] for item in listed.json()["items"]] == [by_phone.json()["id"]]

    child = await client.post(
        "/v1/staff/requests",
        json={
            "request": {"type": "access"},
            "identifiers": {"phone": "010-9999-0000"},
            "intake_channel": "counter",
            "verification": {
                "method": "representative",
                "relation": "legal_representative_of_child_under_14",
                "document_kind": "family_relation_certificate",
                "representative_id_check": "id_document_in_person",
                "document_ref": "docs:2026/11/0042",
            },
            "notify": {"channel": "sms", "destination": "010-8888-7777"},
        },
        headers=agent,
    )
    assert child.status_code == 201, child.text
    detail = (await client.get(f"/v1/staff/requests/{child.json()['id']}", headers=agent)).json()
    assert detail["verification_method"] == "representative"
    assert detail["verification"]["checked_by"] == "staff:agent-3"
    assert detail["verification"]["relation"] == "legal_representative_of_child_under_14"
    assert detail["intake_channel"] == "counter"
    assert detail["identifiers"] == [{"kind": "phone", "masked": "010-****-0000"}]
    assert detail["status"] == "received"  # no automatic approval for representatives

    duplicate = await client.post(
        "/v1/staff/requests",
        json={
            "request": {"type": "deletion"},
            "identifiers": {"email": "KIM@example.com"},
            "intake_channel": "phone",
            "verification": {"method": "agent", "check": "knowledge_questions"},
        },
        headers=agent,
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["open_request_id"] == by_phone.json()["id"]


@pytest.mark.parametrize(
    "patch",
    [
        {"identifiers": {}},
        {"identifiers": {"phone": "010-12"}},
        {"verification": {"method": "representative", "relation": "delegate"}},
        {"verification": {"method": "agent", "check": "gut_feeling"}},
        {"intake_channel": "app"},
        {"notify": {"channel": "email"}},
    ],
)
async def test_intake_validation(
    app: FastAPI, client: httpx.AsyncClient, patch: dict[str, Any]
) -> None:
    body = {
        "request": {"type": "access"},
        "identifiers": {"phone": "010-5555-6666"},
        "intake_channel": "phone",
        "verification": {"method": "agent", "check": "callback_to_number_on_record"},
    } | patch
    response = await client.post("/v1/staff/requests", json=body, headers=staff(app, *AGENT))
    assert response.status_code == 422, response.text
    assert "010-12" not in response.text


async def test_audit_endpoint_filters_and_pages(app: FastAPI, client: httpx.AsyncClient) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, "refused")
    officer = staff(app, *OFFICER, sub="officer-5")
    response = await client.get(
        "/v1/audit", params={"target_id": request_id, "limit": 2}, headers=officer
    )
    assert response.status_code == 200
    first = response.json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await client.get(
        "/v1/audit",
        params={"target_id": request_id, "cursor": first["next_cursor"], "limit": 50},
        headers=officer,
    )
    actions = [entry["action"] for entry in first["items"] + rest.json()["items"]]
    assert actions[::-1][:3] == [
        "request.submitted",
        "request.notice_queued",
        "request.start_review",
    ]
    assert "request.refuse" in actions
    refusals = await client.get("/v1/audit", params={"action": "request.refuse"}, headers=officer)
    [entry] = refusals.json()["items"]
    assert (
        entry["actor"] == "staff:officer-1"
        and entry["details"]["ground"] == "identity_not_verified"
    )
    reads = await client.get("/v1/audit", params={"actor": "staff:officer-5"}, headers=officer)
    assert {entry["action"] for entry in reads.json()["items"]} == {"audit.read"}


async def test_the_chain_verifies_and_an_altered_row_is_named(
    app: FastAPI, client: httpx.AsyncClient, db: Database, database_url: str, tmp_path: Path
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, "refused")
    async with db.transaction() as session:
        await trail.seal_pending(session)
    async with db.sessionmaker() as session:
        checked, broken = await trail.verify_chain(session)
    assert broken is None and checked >= 5
    env = {
        **os.environ,
        "DSR_ENV": "test",
        "DSR_DATABASE_URL": database_url,
        "DSR_DATA_DIR": str(tmp_path),
        **{
            f"DSR_{name.upper()}": value
            for name, value in app.state.settings.model_dump().items()
            if name in ("token_signing_key", "field_encryption_key", "blind_index_key")
        },
    }

    def cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "audit", "verify"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    intact = cli()
    assert intact.returncode == 0, intact.stderr
    assert f"audit chain intact: {checked} entries" in intact.stdout

    async with db.transaction() as session:
        target = (
            await session.execute(
                sa.text("SELECT id FROM audit_entry WHERE action = 'request.refuse'")
            )
        ).scalar_one()
        await session.execute(
            sa.text(
                "UPDATE audit_entry SET details = jsonb_set(details, '{ground}', '\"policy_6_2\"') "
                "WHERE id = :id"
            ),
            {"id": target},
        )
    async with db.sessionmaker() as session:
        assert (await trail.verify_chain(session))[1] == target
    broken_run = cli()
    assert broken_run.returncode == 1
    assert f"audit chain broken at entry {target}" in broken_run.stderr
