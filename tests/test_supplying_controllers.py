"""Data another controller supplied (Decree Art. 43(2)) and where records came from (PIPA Art. 20).

The demo: two of the demo subject's deliveries as recipient came through the Qoo10 marketplace
(``marketplace_code``/``order_no``), the third only from its sender. Qoo10 is registered as a
``controller`` with a webhook (verified with ``standardwebhooks``); the carriers as processors.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from standardwebhooks import Webhook

from app.clock import FrozenClock
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.loader import DataMapError, parse_datamap
from app.demo.load import DEMO_SUBJECT, demo_datamap_text
from app.demo.processors import PROCESSORS
from app.fulfilment.reports.html import render_access_report_html
from app.outbox.worker import Worker
from tests.support.demo import demo_settings, fresh_demo
from tests.support.lifecycle import AGENT, OFFICER, make_subject, staff
from tests.support.reports import make_report
from tests.support.servers import RecordingServer
from tests.support.webhooks import register, verified

DEMO_PHONE = "+821055550001"
ORDERS = ["Q10-2026-000001", "Q10-2026-000002"]


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
    )


@pytest.fixture
async def secrets(
    client: httpx.AsyncClient, staff_headers: Any, receiver: RecordingServer
) -> dict[str, str]:
    out = {}
    for processor in PROCESSORS:
        created = await register(
            client, staff_headers, code=processor.code, url=f"{receiver.url}/{processor.code}"
        )
        out[processor.code] = created["secret"]
    marketplace = await register(
        client,
        staff_headers,
        code="qoo10",
        url=f"{receiver.url}/qoo10",
        name="Qoo10",
        nation="SG",
        party="controller",
    )
    assert marketplace["party"] == "controller"
    assert marketplace["events"] == [
        "personal_data.correction_requested",
        "personal_data.deletion_requested",
    ]
    out["qoo10"] = marketplace["secret"]
    return out


def received(receiver: RecordingServer, secrets: dict[str, str], code: str) -> list[Any]:
    return [verified(secrets[code], item) for item in receiver.requests(f"/{code}")]


async def carry_out(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, body: dict[str, Any]
) -> tuple[str, Any]:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post("/v1/requests", json=body, headers=subject.headers)
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    agent = staff(app, *AGENT)
    assert (await client.post(f"/v1/staff/requests/{request_id}/review", headers=agent)).is_success
    approved = await client.post(f"/v1/staff/requests/{request_id}/approve", json={}, headers=agent)
    assert approved.status_code == 200, approved.text
    await worker.drain()
    await worker.drain()
    detail = await client.get(
        f"/v1/staff/requests/{request_id}", headers=staff(app, *OFFICER, sub="officer-1")
    )
    assert detail.status_code == 200, detail.text
    return request_id, detail.json()


async def test_a_recipients_correction_is_forwarded_to_the_marketplace_and_its_answer_recorded(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    receiver: RecordingServer,
    secrets: dict[str, str],
    clock: FrozenClock,
) -> None:
    _, detail = await carry_out(
        app,
        client,
        worker,
        {"type": "correction", "corrections": [{"item": "name", "new_value": "김하람"}]},
    )
    assert detail["status"] == "completed"

    [asked] = received(receiver, secrets, "qoo10")
    assert asked["type"] == "personal_data.correction_requested"
    # Only the marketplace's own orders: not the sender-only delivery, not the sent ones.
    assert asked["data"] == {
        "records": [{"reference": order, "items": {"name": "김하람"}} for order in ORDERS]
    }
    # The carriers are told the correction as before (their own tracking numbers).
    carriers = {
        item.path.strip("/") for item in receiver.received if item.path.strip("/") != "qoo10"
    }
    assert carriers and all(
        event["type"] == "personal_data.corrected"
        for code in carriers
        for event in received(receiver, secrets, code)
    )

    [notice] = [n for n in detail["processor_notices"] if n["processor"] == "qoo10"]
    assert notice["party"] == "controller" and notice["channel"] == "webhook"
    assert notice["event_type"] == "personal_data.correction_requested"
    assert notice["acknowledgement"] is None  # waiting for the marketplace's answer

    # The marketplace answers with the signed API: cannot apply, with its reason.
    body = json.dumps(
        {"webhook_id": notice["webhook_id"], "status": "rejected", "note": "Order closed in 2025"}
    )
    msg_id = f"ack_{uuid.uuid4().hex}"
    now = clock.now()
    answer = await client.post(
        "/v1/partner/acknowledgements",
        content=body,
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secrets["qoo10"]).sign(msg_id, now, body),
        },
    )
    assert answer.status_code == 201, answer.text
    again = await client.get(
        f"/v1/staff/requests/{detail['id']}", headers=staff(app, *OFFICER, sub="officer-1")
    )
    [answered] = [n for n in again.json()["processor_notices"] if n["processor"] == "qoo10"]
    assert answered["acknowledgement"] == "rejected"
    assert answered["note"] == "Order closed in 2025"


async def test_a_deletion_asks_the_marketplace_to_delete_its_orders(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    receiver: RecordingServer,
    secrets: dict[str, str],
) -> None:
    _, detail = await carry_out(app, client, worker, {"type": "deletion", "items": ["address"]})
    assert detail["status"] in ("completed", "partially_completed")
    [asked] = received(receiver, secrets, "qoo10")
    assert asked["type"] == "personal_data.deletion_requested"
    assert asked["data"] == {
        "records": [{"reference": order, "items": ["address"]} for order in ORDERS]
    }


async def test_the_access_report_says_where_each_record_group_came_from(
    demo: str, settings: Any
) -> None:
    datamap = parse_datamap(yaml.safe_load(demo_datamap_text()))
    subject = SubjectIdentifiers(phone=DEMO_SUBJECT.phone_e164, email=DEMO_SUBJECT.email)
    report = await make_report(demo, settings, datamap, subject)
    by_group = {(i.collection, i.role, i.item): i.origins for i in report.items}
    as_recipient = by_group[("deliveries", "recipient", "name")]
    assert [(o.origin, o.controller, o.records) for o in as_recipient] == [
        ("sender", None, 1),
        ("controller", "qoo10", 2),
    ]
    assert as_recipient[0].label.en == "Provided by the sender of the parcel"
    assert as_recipient[1].label.ko == "Qoo10이(가) 제공"
    assert as_recipient[1].label.en == "Provided by Qoo10"
    [as_sender] = by_group[("deliveries", "sender", "name")]
    assert (as_sender.origin, as_sender.label.en) == ("subject", "Collected from you")

    html_ko = render_access_report_html(report, settings=settings, lang="ko")
    assert "택배를 보낸 분이 제공" in html_ko and "Qoo10이(가) 제공" in html_ko
    html_en = render_access_report_html(report, settings=settings, lang="en")
    assert "Provided by Qoo10" in html_en and "Collected from you" in html_en


def test_the_data_map_checks_origins() -> None:
    data = yaml.safe_load(demo_datamap_text())
    data["collections"][1]["origin"] = "someone"
    with pytest.raises(DataMapError) as shape:
        parse_datamap(data)
    assert "collections[1].origin.from: Input should be 'subject', 'sender' or 'controller'" in str(
        shape.value
    )
    data = yaml.safe_load(demo_datamap_text())
    data["collections"][0]["roles"]["recipient"]["origin"] = {"from": "controller"}
    data["collections"][0]["roles"]["sender"]["origin"] = {"from": "controller", "controller": "x"}
    with pytest.raises(DataMapError) as references:
        parse_datamap(data)
    text = str(references.value)
    assert "collections[0].roles.recipient.origin.controller: from: controller names" in text
    assert "collections[0].roles.sender.origin.controller: not listed under controllers" in text
