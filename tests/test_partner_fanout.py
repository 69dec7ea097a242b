"""Every partner told whichever channel it has: the policy's 49 processors as the demo registers
them (most by signed webhook, those without a receiver by e-mail), the marketplace that supplied
recipients' details, and where each record group came from in the subject's JSON report.

Real parts only: a webhook receiver and an e-mail gateway on 127.0.0.1, the demo data set in
PostgreSQL, partners following the link in their e-mail with their own HTTP client.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.clock import FrozenClock
from app.datamap.connectors.postgres import connect
from app.db import Database
from app.demo.processors import CONTROLLERS, EMAIL_PARTNERS, PROCESSORS
from app.outbox.worker import Worker
from app.webhooks import processors
from app.webhooks.signing import webhook_id
from tests.support.demo import demo_settings, fresh_demo
from tests.support.lifecycle import AGENT, OFFICER, make_subject, staff
from tests.support.servers import RecordingServer
from tests.support.webhooks import notify, verified

DEMO_PHONE = "+821055550001"
OFFICER_EMAIL = "privacy@qxpress.example"
ORDERS = ["Q10-2026-000001", "Q10-2026-000002"]  # the marketplace's orders naming the subject
LINK = re.compile(r"https://testserver(/partner/confirm/[0-9a-f.]+(?:\?lang=en)?)$", re.M)
REFERENCE = re.compile(r"^- (\S+)$", re.M)
SUBJECT_LINE = {  # the notice's title in each partner language
    "ko": "개인정보 정정 통지",
    "en": "Personal data corrected",
    "ja": "個人情報訂正のお知らせ",
    "zh-Hans": "个人信息更正通知",
    "zh-Hant": "個人資料更正通知",
}


@pytest.fixture
async def demo(database_url: str) -> AsyncIterator[str]:
    async with fresh_demo(database_url, subjects=4) as url:
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
        auto_approve_access=True,
        public_base_url="https://testserver",
        privacy_officer_email=OFFICER_EMAIL,
        partner_reminder_days=3,
        partner_escalation_days=7,
    )


@pytest.fixture
async def seeded(db: Database, app: FastAPI, receiver: RecordingServer) -> dict[str, str]:
    """The partners exactly as ``dsr demo`` registers them; webhooks point at the receiver."""
    async with db.transaction() as session:
        return await processors.ensure_processors(
            session,
            crypto=app.state.crypto,
            now=app.state.clock.now(),
            processors=[p.seed() for p in (*PROCESSORS, *CONTROLLERS)],
            webhook_base_url=receiver.url,
        )


@pytest.fixture
async def pages(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A partner's browser (its own cookies; page cookies are Secure outside dev)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def address_of(code: str) -> str:
    return f"dsr@{code}.partner.example"  # what the demo registers (Processor.seed)


def emails_to(gateway: RecordingServer, address: str) -> list[dict[str, Any]]:
    return [item.json() for item in gateway.requests("/email") if item.json()["to"] == address]


def webhooks_to(receiver: RecordingServer, secret: str, code: str) -> list[Any]:
    return [verified(secret, item) for item in receiver.requests(f"/{code}")]


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def confirm(pages: httpx.AsyncClient, mail: dict[str, Any], **answer: str) -> httpx.Response:
    """What the partner does: open the link in the e-mail, answer on the page."""
    found = LINK.search(mail["body"])
    assert found is not None, mail["body"]
    page = await pages.get(found.group(1))
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    notice = re.search(r'name="notice" value="([^"]+)"', page.text)
    assert csrf is not None and notice is not None
    return await pages.post(
        found.group(1), data={"csrf_token": csrf.group(1), "notice": notice.group(1), **answer}
    )


async def test_each_of_the_49_processors_is_told_of_a_correction_over_its_channel(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
    receiver: RecordingServer,
    seeded: dict[str, str],
    pages: httpx.AsyncClient,
) -> None:
    assert len(PROCESSORS) == 49
    officer = staff_headers("privacy_officer")
    listed = (await client.get("/v1/processors", headers=officer)).json()
    channel = {item["code"]: item["channel"] for item in listed}
    language = {item["code"]: item["language"] for item in listed}
    by_email = {p.code for p in PROCESSORS if channel[p.code] == "email"}
    assert by_email == EMAIL_PARTNERS - {c.code for c in CONTROLLERS} and len(by_email) == 6
    assert {language[code] for code in by_email} == {"en", "ja", "zh-Hant"}
    assert all(channel[p.code] == "webhook" for p in PROCESSORS if p.code not in by_email)

    sent = {}
    for p in PROCESSORS:
        data = {"records": [{"reference": f"REF-{p.code}", "items": {"name": "김하람"}}]}
        sent[p.code] = await notify(db, worker, code=p.code, data=data)
    await worker.drain()

    told = set()
    for p in PROCESSORS:
        message_id = sent[p.code]
        assert message_id is not None
        if p.code in by_email:
            assert webhooks_to(receiver, seeded[p.code], p.code) == []
            [mail] = emails_to(gateway, address_of(p.code))
            assert mail["template"] == "partner_notice"
            assert SUBJECT_LINE[language[p.code]] in mail["subject"]
            assert webhook_id(message_id) in mail["subject"]
            # Only its own record, with the new value.
            assert REFERENCE.findall(mail["body"]) == [f"REF-{p.code}"]
            assert "name = 김하람" in mail["body"]
        else:
            [event] = webhooks_to(receiver, seeded[p.code], p.code)
            assert event["type"] == "personal_data.corrected"
            assert event["data"]["records"] == [
                {"reference": f"REF-{p.code}", "items": {"name": "김하람"}}
            ]
        told.add(p.code)
    assert len(told) == 49
    assert len(gateway.requests("/email")) == 6  # nothing e-mailed twice, nothing to others

    # The e-mailed partners answer on the page; the answer is the delivery's acknowledgement.
    for code in sorted(by_email):
        [mail] = emails_to(gateway, address_of(code))
        done = await confirm(pages, mail, status="applied")
        assert done.status_code == 200, done.text
        delivery = await client.get(f"/v1/deliveries/{sent[code]}", headers=officer)
        assert delivery.json()["acknowledgement"]["status"] == "applied"
        assert delivery.json()["follow_up"]["reminders"] == 0


async def test_a_demo_correction_fans_out_over_both_channels_and_to_the_marketplace(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: Any,
    worker: Worker,
    gateway: RecordingServer,
    receiver: RecordingServer,
    seeded: dict[str, str],
    pages: httpx.AsyncClient,
    clock: FrozenClock,
    demo: str,
) -> None:
    officer = staff_headers("privacy_officer")
    # Two of the subject's carriers have no webhook receiver: a Korean one and a Chinese one.
    for code in ("hanjin", "sf-express"):
        switched = await client.patch(
            f"/v1/processors/{code}",
            json={"channel": "email", "email": address_of(code)},
            headers=officer,
        )
        assert switched.status_code == 200, switched.text

    subject = await make_subject(app, DEMO_PHONE)
    body = {"type": "correction", "corrections": [{"item": "name", "new_value": "김하람"}]}
    created = await client.post("/v1/requests", json=body, headers=subject.headers)
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    agent = staff(app, *AGENT)
    assert (await client.post(f"/v1/staff/requests/{request_id}/review", headers=agent)).is_success
    approved = await client.post(f"/v1/staff/requests/{request_id}/approve", json={}, headers=agent)
    assert approved.status_code == 200, approved.text
    await worker.drain()
    await worker.drain()
    view = staff(app, *OFFICER, sub="officer-1")
    detail = (await client.get(f"/v1/staff/requests/{request_id}", headers=view)).json()
    assert detail["status"] == "completed"

    notices = {n["processor"]: n for n in detail["processor_notices"]}
    channels = {n["channel"] for n in notices.values()}
    assert channels == {"webhook", "email"}
    assert {"hanjin", "sf-express", "qoo10"} <= set(notices)
    assert {"hct", "yamato", "ninjavan", "dhlec-my", "yuhan-technos", "lguplus"} <= set(notices)
    due = datetime.fromisoformat(detail["due_at"])
    for code, notice in notices.items():
        assert notice["delivery_status"] == "delivered", code
        assert datetime.fromisoformat(notice["delivered_at"]) <= due  # within the deadline
        if notice["channel"] == "webhook":
            [event] = webhooks_to(receiver, seeded[code], code)
            assert event["type"] == notice["event_type"] == "personal_data.corrected"
            assert all(r["items"] == {"name": "김하람"} for r in event["data"]["records"])
        else:
            [mail] = emails_to(gateway, address_of(code))
            assert notice["webhook_id"] in mail["subject"]
    by_email = {code for code, notice in notices.items() if notice["channel"] == "email"}
    assert by_email == {"hanjin", "sf-express", "qoo10"}
    assert not [item for item in receiver.received if item.path.strip("/") in by_email]

    conn = await connect(demo)
    try:
        references = {
            code: {
                row[0]
                for row in await conn.fetch(
                    "SELECT tracking_no FROM demo.deliveries WHERE carrier_code = $1 "
                    "UNION SELECT reservation_no FROM demo.intl_reservations "
                    "WHERE carrier_code = $1",
                    code,
                )
            }
            for code in ("hanjin", "sf-express")
        }
    finally:
        await conn.close()

    # The carriers by e-mail: only their own references, in their language.
    [hanjin] = emails_to(gateway, address_of("hanjin"))
    assert hanjin["subject"].startswith("[QXPRESS] 개인정보 정정 통지")
    listed = REFERENCE.findall(hanjin["body"])
    assert listed and set(listed) <= references["hanjin"]
    assert "name = 김하람" in hanjin["body"] and "Q10-2026" not in hanjin["body"]
    assert "?lang=en" not in hanjin["body"]  # a Korean partner's page is Korean
    [sf] = emails_to(gateway, address_of("sf-express"))
    assert sf["subject"].startswith("[QXPRESS] 个人信息更正通知")
    listed = REFERENCE.findall(sf["body"])
    assert "IR202609000001" in listed and set(listed) <= references["sf-express"]
    assert "Q10-2026" not in sf["body"] and "?lang=en" in sf["body"]

    # The marketplace (a controller, e-mailed in the demo): only its orders, as a request.
    [asked] = emails_to(gateway, address_of("qoo10"))
    assert notices["qoo10"]["party"] == "controller"
    assert notices["qoo10"]["event_type"] == "personal_data.correction_requested"
    assert asked["subject"].startswith("[QXPRESS] Correction requested for data you supplied")
    assert REFERENCE.findall(asked["body"]) == ORDERS
    assert "Art. 43(2)" in asked["body"] and "name = 김하람" in asked["body"]

    # Their answers, on the page, are shown to staff with the request.
    korean = await confirm(pages, hanjin, status="applied")
    assert korean.status_code == 200 and '<html lang="ko">' in korean.text
    answered = await confirm(pages, asked, status="rejected", reason="Order archived in 2025")
    assert answered.status_code == 200 and '<html lang="en">' in answered.text
    again = (await client.get(f"/v1/staff/requests/{request_id}", headers=view)).json()
    notices = {n["processor"]: n for n in again["processor_notices"]}
    assert notices["hanjin"]["acknowledgement"] == "applied"
    assert notices["qoo10"]["acknowledgement"] == "rejected"
    assert notices["qoo10"]["note"] == "Order archived in 2025"
    assert notices["sf-express"]["acknowledgement"] is None
    assert notices["sf-express"]["follow_up"]["reminders"] == 0

    # SF Express never answers: reminded every 3 days, the privacy officer told after 7.
    for _ in range(7):
        clock.advance(timedelta(days=1))
        await worker.run_periodic()
        await worker.drain()
    assert len(emails_to(gateway, address_of("sf-express"))) == 3
    assert emails_to(gateway, address_of("sf-express"))[-1]["subject"].startswith("【第2次提醒】")
    [escalation] = emails_to(gateway, OFFICER_EMAIL)
    assert notices["sf-express"]["webhook_id"] in escalation["subject"]
    assert len(emails_to(gateway, address_of("hanjin"))) == 1  # answered: no reminder
    assert len(emails_to(gateway, address_of("qoo10"))) == 1
    late = (await client.get(f"/v1/staff/requests/{request_id}", headers=view)).json()
    [sf_notice] = [n for n in late["processor_notices"] if n["processor"] == "sf-express"]
    assert sf_notice["follow_up"]["reminders"] == 2 and sf_notice["follow_up"]["escalated_at"]

    # The console's request page shows the same to staff: channel, answers, reminders.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as console:
        sign_in = await console.get("/console/sign-in?lang=en")
        signed = await console.post(
            "/console/dev-sign-in",
            data={"csrf_token": csrf_in(sign_in.text), "role": "privacy_officer", "user": "lee"},
        )
        assert signed.status_code == 303, signed.text
        page = await console.get(f"/console/requests/{request_id}")
    assert page.status_code == 200, page.text
    rows = dict(re.findall(r'<li data-processor="([^"]+)">(.*?)</li>', page.text))
    assert "supplied the data" in rows["qoo10"] and "e-mail" in rows["qoo10"]
    assert "cannot apply: Order archived in 2025" in rows["qoo10"]
    assert "2 reminder(s)" in rows["sf-express"]
    assert "escalated to the privacy officer" in rows["sf-express"]
    assert "applied" in rows["hanjin"] and "webhook" in rows["hct"]


async def test_the_json_access_report_says_where_each_record_group_came_from(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, seeded: dict[str, str]
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    await worker.drain()
    response = await client.get(f"/v1/requests/{request_id}/report", headers=subject.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items and all(item["origins"] for item in items)  # every record group says
    origins = {
        (item["collection"], item["role"], item["item"]): [
            (o["origin"], o["controller"], o["records"], o["label"]["ko"], o["label"]["en"])
            for o in item["origins"]
        ]
        for item in items
    }
    assert origins[("deliveries", "recipient", "address")] == [
        ("sender", None, 1, "택배를 보낸 분이 제공", "Provided by the sender of the parcel"),
        ("controller", "qoo10", 2, "Qoo10이(가) 제공", "Provided by Qoo10"),
    ]
    assert origins[("deliveries", "sender", "address")] == [
        ("subject", None, 5, "본인에게서 직접 수집", "Collected from you")
    ]
    assert {o[0] for o in origins[("email_counseling", "customer", "email")]} == {"subject"}
