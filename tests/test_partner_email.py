"""Partners without a webhook: the notice by e-mail, the confirmation page, reminders, escalation.

A real e-mail gateway on 127.0.0.1 records what is sent; the partner follows the link in the
e-mail with the same HTTP client (the page's CSRF cookie and form token as a browser would).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.clock import FrozenClock
from app.db import Database
from app.outbox.jobs import WorkerContext
from app.outbox.worker import Worker
from app.webhooks.signing import webhook_id
from app.worker import build_registry
from tests.support.servers import RecordingServer
from tests.support.webhooks import notify

OFFICER_EMAIL = "privacy@qxpress.example"
LINK = re.compile(r"https://testserver(/partner/confirm/[0-9a-f.]+(?:\?lang=en)?)$", re.M)


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "allow_private_webhooks": True,
        "webhook_processor_cache_seconds": 0,
        "privacy_officer_email": OFFICER_EMAIL,
        "email_gateway_url": f"{gateway.url}/email",
        "sms_gateway_url": f"{gateway.url}/sms",
        "public_base_url": "https://testserver",
        "partner_reminder_days": 3,
        "partner_escalation_days": 7,
        "partner_confirm_link_days": 14,
    }


@pytest.fixture
async def pages(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The partner's browser: https (page cookies are Secure outside dev), its own cookies."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def register_email(
    client: httpx.AsyncClient, staff_headers: Any, *, code: str, email: str, **extra: Any
) -> dict[str, Any]:
    body = {"code": code, "name": code.title(), "nation": "JP", "channel": "email", "email": email}
    response = await client.post(
        "/v1/processors", json={**body, **extra}, headers=staff_headers("privacy_officer")
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def emails_to(gateway: RecordingServer, address: str) -> list[dict[str, Any]]:
    found = [item.json() for item in gateway.requests("/email")]
    return [mail for mail in found if mail["to"] == address]


def link_in(mail: dict[str, Any]) -> str:
    found = LINK.search(mail["body"])
    assert found is not None, mail["body"]
    return found.group(1)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def delivery(client: httpx.AsyncClient, staff_headers: Any, message_id: uuid.UUID) -> Any:
    response = await client.get(
        f"/v1/deliveries/{message_id}", headers=staff_headers("privacy_officer")
    )
    assert response.status_code == 200, response.text
    return response.json()


CORRECTED = {
    "records": [{"reference": "QX-JP-1001", "items": {"name": "김민지", "phone": "+821055550009"}}]
}
OTHER = {"records": [{"reference": "QX-JP-2002", "items": {"name": "김민지"}}]}


async def test_an_email_partner_gets_only_its_references_in_its_language_and_confirms(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
    pages: httpx.AsyncClient,
) -> None:
    created = await register_email(
        client, staff_headers, code="kuroneko-mail", email="Dsr.Team@kuroneko.example"
    )
    assert created["channel"] == "email" and created["language"] == "ja"
    assert created["email"] == "d***@kuroneko.example"  # masked, never the address
    listed = await client.get("/v1/processors", headers=staff_headers("privacy_officer"))
    assert "Dsr.Team" not in listed.text and "d***@kuroneko.example" in listed.text
    await register_email(client, staff_headers, code="hct", email="ops@hct.example", nation="TW")

    mine = await notify(db, worker, code="kuroneko-mail", data=CORRECTED)
    theirs = await notify(db, worker, code="hct", data=OTHER)
    assert mine is not None and theirs is not None
    await worker.drain()

    [mail] = emails_to(gateway, "Dsr.Team@kuroneko.example")
    assert mail["template"] == "partner_notice"
    assert mail["subject"].startswith("[QXPRESS] 個人情報訂正のお知らせ")
    assert "ご担当者様" in mail["body"] and "ページは英語で表示されます" in mail["body"]
    assert webhook_id(mine) in mail["subject"]
    assert "QX-JP-1001" in mail["body"] and "name = 김민지" in mail["body"]
    assert "phone = +821055550009" in mail["body"]
    assert "QX-JP-2002" not in mail["body"]  # another partner's record never
    [other] = emails_to(gateway, "ops@hct.example")
    assert "個人資料更正通知" in other["subject"]  # Taiwan: traditional Chinese
    assert "QX-JP-1001" not in other["body"]

    sent = await delivery(client, staff_headers, mine)
    assert sent["status"] == "delivered"
    assert [a["outcome"] for a in sent["attempt_log"]] == ["emailed"]
    assert sent["follow_up"]["reminders"] == 0

    path = link_in(mail)
    assert path.endswith("?lang=en")  # the page is Korean or English: English for a ja partner
    page = await pages.get(path)
    assert page.status_code == 200
    assert '<html lang="en">' in page.text and "Confirm notice" in page.text
    assert webhook_id(mine) in page.text and "QX-JP-1001" in page.text
    assert "김민지" not in page.text  # the page shows references, not the person's values
    token = csrf_of(page)

    # "Cannot apply" needs a reason: the form answers with the error, nothing recorded.
    missing = await pages.post(
        path, data={"csrf_token": token, "notice": webhook_id(mine), "status": "rejected"}
    )
    assert missing.status_code == 422
    assert 'href="#reason"' in missing.text
    assert (await delivery(client, staff_headers, mine))["acknowledgement"] is None

    done = await pages.post(
        path,
        data={
            "csrf_token": token,
            "notice": webhook_id(mine),
            "status": "rejected",
            "reason": "Customs law: kept 5 years",
        },
    )
    assert done.status_code == 200, done.text
    assert 'data-acknowledgement="rejected"' in done.text
    acknowledged = (await delivery(client, staff_headers, mine))["acknowledgement"]
    assert acknowledged["status"] == "rejected"
    assert acknowledged["note"] == "Customs law: kept 5 years"

    # The same link again: refused, the answer stays.
    reused = await pages.post(
        path, data={"csrf_token": token, "notice": webhook_id(mine), "status": "applied"}
    )
    assert reused.status_code == 409
    assert (await pages.get(path)).status_code == 409
    assert (await delivery(client, staff_headers, mine))["acknowledgement"]["status"] == "rejected"

    # Without the page's CSRF token: refused before anything runs.
    other_path = link_in(other)
    forged = await pages.post(other_path, data={"notice": webhook_id(theirs), "status": "applied"})
    assert forged.status_code == 403

    # A link of another notice cannot confirm this one.
    wrong = await pages.post(
        other_path, data={"csrf_token": token, "notice": webhook_id(mine), "status": "applied"}
    )
    assert wrong.status_code == 404
    assert (await delivery(client, staff_headers, theirs))["acknowledgement"] is None

    # A tampered token (the notice id of another notice under this token's MAC): refused.
    forged_token = other_path.split("/")[-1].split("?")[0].replace(theirs.hex, mine.hex)
    assert (await pages.get(f"/partner/confirm/{forged_token}")).status_code == 404


async def test_an_expired_link_is_refused(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
    clock: FrozenClock,
    pages: httpx.AsyncClient,
) -> None:
    await register_email(client, staff_headers, code="yu-pack", email="dsr@yupack.example")
    message_id = await notify(db, worker, code="yu-pack", data=CORRECTED)
    await worker.drain()
    path = link_in(emails_to(gateway, "dsr@yupack.example")[0])
    page = await pages.get(path)
    token = csrf_of(page)
    clock.advance(timedelta(days=14, seconds=1))
    expired = await pages.get(path)
    assert expired.status_code == 410
    assert "text/html" in expired.headers["content-type"]
    posted = await pages.post(
        path,
        data={
            "csrf_token": token,
            "notice": webhook_id(message_id or uuid.uuid4()),
            "status": "applied",
        },
    )
    assert posted.status_code == 410
    assert (await delivery(client, staff_headers, message_id))["acknowledgement"] is None


async def test_reminders_until_confirmed_then_one_escalation_across_workers(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
    clock: FrozenClock,
    database_url: str,
    pages: httpx.AsyncClient,
) -> None:
    await register_email(
        client, staff_headers, code="sagawa", email="privacy@sagawa.example", language="en"
    )
    message_id = await notify(db, worker, code="sagawa", data=CORRECTED)
    assert message_id is not None
    await worker.drain()
    assert len(emails_to(gateway, "privacy@sagawa.example")) == 1

    async def follow_up_after(hours: int) -> None:
        clock.advance(timedelta(hours=hours))  # the hourly job's next slot
        await worker.run_periodic()
        await worker.drain()

    await follow_up_after(71)  # under three days: no reminder yet
    assert len(emails_to(gateway, "privacy@sagawa.example")) == 1
    await follow_up_after(2)
    mails = emails_to(gateway, "privacy@sagawa.example")
    assert len(mails) == 2
    assert mails[1]["subject"].startswith("Reminder 1: [QXPRESS] Personal data corrected")
    assert "QX-JP-1001" in mails[1]["body"]
    assert link_in(mails[1]) != link_in(mails[0])  # each e-mail its own link
    await follow_up_after(72)
    assert len(emails_to(gateway, "privacy@sagawa.example")) == 3
    assert emails_to(gateway, OFFICER_EMAIL) == []  # six days: not escalated yet

    # Day 7: two workers on their own connections run the follow-up at the same moment.
    clock.advance(timedelta(hours=23))
    others = []
    for _ in range(2):
        other_db = Database.connect(database_url, pool_size=2)
        http = httpx.AsyncClient()
        ctx = WorkerContext(
            settings=worker.ctx.settings,
            db=other_db,
            crypto=worker.ctx.crypto,
            clock=clock,
            http=http,
        )
        others.append((Worker(ctx, build_registry()), other_db, http))
    try:
        await asyncio.gather(*(loop.run_periodic() for loop, _, _ in others))
        clock.advance(timedelta(hours=1))  # the next slot: still told once
        await asyncio.gather(*(loop.run_periodic() for loop, _, _ in others))
    finally:
        for _, other_db, http in others:
            await http.aclose()
            await other_db.dispose()
    await worker.drain()
    [escalation] = emails_to(gateway, OFFICER_EMAIL)
    assert escalation["template"] == "partner_escalation"
    assert webhook_id(message_id) in escalation["subject"]
    assert "privacy@sagawa.example" not in escalation["body"]  # the partner staff's address

    listed = await client.get(
        "/v1/deliveries/awaiting-acknowledgement", headers=staff_headers("privacy_officer")
    )
    [row] = [item for item in listed.json() if item["id"] == str(message_id)]
    assert row["follow_up"]["reminders"] == 2
    assert row["follow_up"]["escalated_at"] is not None

    # Confirmed with the latest link: reminders stop, the kept copy of the notice is destroyed.
    path = link_in(emails_to(gateway, "privacy@sagawa.example")[-1])
    page = await pages.get(path)
    done = await pages.post(
        path,
        data={"csrf_token": csrf_of(page), "notice": webhook_id(message_id), "status": "applied"},
    )
    assert done.status_code == 200
    count = len(emails_to(gateway, "privacy@sagawa.example"))
    for _ in range(4):
        await follow_up_after(24)
    assert len(emails_to(gateway, "privacy@sagawa.example")) == count
    assert len(emails_to(gateway, OFFICER_EMAIL)) == 1
    async with db.sessionmaker() as session:
        kept = (
            await session.execute(
                sa.text("SELECT body_encrypted FROM partner_follow_up WHERE message_id = :id"),
                {"id": message_id},
            )
        ).scalar_one()
    assert kept is None


async def test_email_channel_needs_an_address_and_rotation_changes_it(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
) -> None:
    officer = staff_headers("privacy_officer")
    missing = await client.post(
        "/v1/processors",
        json={"code": "india-post", "name": "India Post", "nation": "IN", "channel": "email"},
        headers=officer,
    )
    assert missing.status_code == 422
    created = await register_email(
        client, staff_headers, code="india-post", email="old@indiapost.example", nation="IN"
    )
    assert created["language"] == "en"
    rotated = await client.patch(
        "/v1/processors/india-post", json={"email": "new@indiapost.example"}, headers=officer
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["email"] == "n***@indiapost.example"
    to_webhook = await client.patch(
        "/v1/processors/india-post", json={"channel": "webhook"}, headers=officer
    )
    assert to_webhook.status_code == 422  # no webhook_url
    await notify(db, worker, code="india-post", data=CORRECTED)
    await worker.drain()
    assert emails_to(gateway, "old@indiapost.example") == []
    assert len(emails_to(gateway, "new@indiapost.example")) == 1
    async with db.sessionmaker() as session:
        audit = (await session.execute(sa.text("SELECT details::text FROM audit_entry"))).scalars()
        assert not [row for row in audit if "indiapost.example" in row]
