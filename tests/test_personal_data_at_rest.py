"""No personal data in clear at rest: partner replies and callers' addresses.

- A partner that echoes the notice used to leave the corrected values in
  ``webhook_attempt.response_excerpt``, shown by ``/v1/deliveries/{id}``: now only the reply's
  size and a keyed digest are kept.
- Client addresses were stored in clear in ``audit_entry`` and returned by ``/v1/audit``: now a
  keyed hash for everyone; for staff (access records) the address sealed, shown to the privacy
  officer alone, in a read that is itself audited.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.audit.actors import CLIENT_IP_PURPOSE
from app.db import Database
from app.outbox.worker import Worker
from tests.support.lifecycle import make_subject, new_request, staff
from tests.support.servers import Received, RecordingServer, Reply
from tests.support.webhooks import notify, register

NEW_VALUE = "서울특별시 강서구 공항대로 247, 101동 202호"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhooks": True, "webhook_processor_cache_seconds": 0}


async def test_a_partner_echoing_the_notice_leaves_no_corrected_value_behind(
    client: httpx.AsyncClient, app: FastAPI, staff_headers: Any, db: Database, worker: Worker
) -> None:
    def echo(item: Received) -> Reply:
        return Reply(200, {"received": item.json()})

    with RecordingServer(echo) as receiver:
        await register(client, staff_headers, code="hct", url=receiver.url)
        first = await notify(db, worker, code="hct", data={"new_values": {"address": NEW_VALUE}})
        second = await notify(db, worker, code="hct", data={"tracking_numbers": ["QX1"]})
        await worker.drain()
    assert len(receiver.requests()) == 2

    async with db.sessionmaker() as session:
        dump = (
            await session.execute(sa.text("SELECT string_agg(t::text, ' ') FROM webhook_attempt t"))
        ).scalar_one()
    assert NEW_VALUE not in dump and "공항대로" not in dump

    for message_id in (first, second):
        response = await client.get(
            f"/v1/deliveries/{message_id}", headers=staff(app, "privacy_officer")
        )
        assert response.status_code == 200, response.text
        assert "공항대로" not in response.text
        [attempt] = response.json()["attempt_log"]
        assert attempt["status_code"] == 200 and attempt["response_bytes"] > 0
        assert HEX64.match(attempt["response_digest"])
        assert "response_excerpt" not in attempt


async def test_client_addresses_are_hashed_and_only_the_officer_sees_a_staff_address(
    client: httpx.AsyncClient, app: FastAPI, db: Database
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject)
    viewed = await client.get(
        f"/v1/staff/requests/{request_id}", headers=staff(app, "support_agent", sub="agent-7")
    )
    assert viewed.status_code == 200

    async with db.sessionmaker() as session:
        rows = (
            await session.execute(
                sa.text("SELECT role, client_ip, client_ip_encrypted FROM audit_entry ORDER BY id")
            )
        ).all()
    hashed = app.state.crypto.mac(CLIENT_IP_PURPOSE, "127.0.0.1")
    assert {row[1] for row in rows} == {hashed, None}  # a keyed hash, never the address
    assert all(row[2] is None for row in rows if row[0] == "subject")  # subjects: hash only
    assert any(row[2] is not None for row in rows if row[0] == "support_agent")
    async with db.sessionmaker() as session:
        dump = (
            await session.execute(sa.text("SELECT string_agg(t::text, ' ') FROM audit_entry t"))
        ).scalar_one()
    assert "127.0.0.1" not in dump

    officer = (await client.get("/v1/audit", headers=staff(app, "privacy_officer"))).json()
    admin = (await client.get("/v1/audit", headers=staff(app, "admin"))).json()
    by_role = {entry["role"]: entry for entry in officer["items"]}
    assert by_role["subject"]["client_address"] is None
    assert by_role["subject"]["client_ip"] == hashed
    assert by_role["support_agent"]["client_address"] == "127.0.0.1"
    assert all(entry["client_address"] is None for entry in admin["items"])
    assert all(entry["client_ip"] in (hashed, None) for entry in admin["items"])

    # The officer's read is audited with how many addresses it showed.
    async with db.sessionmaker() as session:
        shown = (
            await session.execute(
                sa.text(
                    "SELECT details->>'addresses_shown' FROM audit_entry "
                    "WHERE action = 'audit.read' AND role = 'privacy_officer'"
                )
            )
        ).scalar_one()
    assert int(shown) >= 1
