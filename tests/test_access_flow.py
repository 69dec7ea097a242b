"""An access request end to end: intake, automatic approval, the worker's report, download."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.clock import FrozenClock
from app.datamap.connectors.postgres import connect
from app.db import Database
from app.demo.load import DEMO_SUBJECT, drop_demo, load_demo
from app.outbox.worker import Worker
from tests.conftest import FROZEN_AT
from tests.support.demo import demo_settings
from tests.support.lifecycle import make_subject
from tests.support.servers import RecordingServer

DEMO_PHONE = "+821055550001"


@pytest.fixture(scope="module")
async def demo_loaded(database_url: str) -> AsyncIterator[str]:
    conn = await connect(database_url)
    try:
        await load_demo(conn, subjects=30, records_per_subject=3, now=FROZEN_AT, reset=True)
        yield database_url
    finally:
        await drop_demo(conn)
        await conn.close()


@pytest.fixture
def settings_overrides(
    demo_loaded: str, tmp_path: Path, gateway: RecordingServer
) -> dict[str, Any]:
    return demo_settings(tmp_path, gateway, auto_approve_access=True)


class Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.ids.extend(value or "" for key, value in attrs if key == "id")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def request_access(app: FastAPI, client: httpx.AsyncClient) -> tuple[Any, str]:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    assert created.status_code == 201, created.text
    # OTP-verified access: intake queues the approval; the worker's drain approves and fulfils.
    assert created.json()["status"] == "received"
    return subject, created.json()["id"]


async def test_access_request_produces_the_report_and_completes(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer, db: Database
) -> None:
    subject, request_id = await request_access(app, client)
    await worker.drain()

    detail = await client.get(f"/v1/requests/{request_id}", headers=subject.headers)
    assert detail.json()["status"] == "completed"

    response = await client.get(f"/v1/requests/{request_id}/report", headers=subject.headers)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"  # the JSON report, like the HTML one
    assert response.headers["x-content-type-options"] == "nosniff"
    report = response.json()
    roles = {(item["collection"], item["role"]) for item in report["items"]}
    assert ("deliveries", "sender") in roles and ("deliveries", "recipient") in roles
    assert len({p["processor"] for p in report["third_parties"]}) >= 3
    values = {value["value"] for item in report["items"] for value in item["values"]}
    assert any(DEMO_SUBJECT.phone.replace("-", "") in v.replace("-", "") for v in values)

    page = await client.get(
        f"/v1/requests/{request_id}/report",
        headers=subject.headers | {"Accept": "text/html"},
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    parsed = Sections()
    parsed.feed(page.text)
    assert len(parsed.ids) >= 5
    assert "열람" in "".join(parsed.text)
    english = await client.get(
        f"/v1/requests/{request_id}/report?lang=en",
        headers=subject.headers | {"Accept": "text/html"},
    )
    assert "Third parties" in english.text or "third parties" in english.text.lower()

    templates = [received.json()["template"] for received in gateway.requests("/sms")]
    assert templates.count("request_completed") == 1
    async with db.sessionmaker() as session:
        downloads = (
            await session.execute(
                sa.text("SELECT count(*) FROM audit_entry WHERE action = 'report.downloaded'")
            )
        ).scalar()
    assert downloads == 3


async def test_another_subject_cannot_read_the_report(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker
) -> None:
    _, request_id = await request_access(app, client)
    await worker.drain()
    stranger = await make_subject(app, "+821099990000")
    response = await client.get(f"/v1/requests/{request_id}/report", headers=stranger.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_no_report_before_fulfilment_and_gone_after_expiry(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, clock: FrozenClock
) -> None:
    subject, request_id = await request_access(app, client)
    early = await client.get(f"/v1/requests/{request_id}/report", headers=subject.headers)
    assert early.status_code == 409 and early.json()["code"] == "report-not-ready"
    await worker.drain()
    clock.advance(timedelta(days=app.state.settings.access_report_ttl_days + 1))
    await worker.run_periodic()
    late = await client.get(f"/v1/requests/{request_id}/report", headers=subject.headers)
    assert late.status_code == 410
    assert late.json()["code"] == "gone"


async def test_report_of_a_non_access_request_is_404(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post(
        "/v1/requests",
        json={"type": "suspension", "purposes": ["marketing"]},
        headers=subject.headers,
    )
    response = await client.get(
        f"/v1/requests/{created.json()['id']}/report", headers=subject.headers
    )
    assert response.status_code == 404
