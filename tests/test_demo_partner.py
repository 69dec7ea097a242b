"""The demo's processors and the stand-in partner: seeded, signed notices verified, acknowledged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app.cli.demo import _seed_processors
from app.demo.partner import load_secrets, partner_app, signed_acknowledgement
from app.demo.processors import PROCESSORS
from app.outbox.worker import Worker
from app.webhooks import notices
from tests.support.servers import closed_port


@pytest.fixture
def partner_port() -> int:
    return closed_port()


@pytest.fixture
def settings_overrides(partner_port: int) -> dict[str, Any]:
    return {
        "allow_private_webhooks": True,
        "webhook_processor_cache_seconds": 0,
        "demo_partner_url": f"http://127.0.0.1:{partner_port}",
    }


@pytest.fixture
async def seeded(app: FastAPI) -> dict[str, str]:
    settings = app.state.settings
    url = app.state.db.engine.url.render_as_string(hide_password=False)
    await _seed_processors(settings, url)
    await _seed_processors(settings, url)  # again: nothing new, secrets kept
    return load_secrets(Path(settings.data_dir))


@pytest.fixture
async def partner(seeded: dict[str, str], partner_port: int) -> AsyncIterator[list[str]]:
    lines: list[str] = []
    server = uvicorn.Server(
        uvicorn.Config(
            partner_app(seeded, service_url="http://127.0.0.1:9", acknowledge=False),
            host="127.0.0.1",
            port=partner_port,
            log_config=None,
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield lines
    server.should_exit = True
    await task


async def test_every_section_3_processor_is_registered_once(
    app: FastAPI, client: httpx.AsyncClient, seeded: dict[str, str], staff_headers: Any
) -> None:
    assert set(seeded) == {p.code for p in PROCESSORS}
    assert all(secret.startswith("whsec_") for secret in seeded.values())
    secrets_file = Path(app.state.settings.data_dir) / "demo-partner-secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    listed = await client.get("/v1/processors?limit=100", headers=staff_headers("privacy_officer"))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    items = body["items"] if isinstance(body, dict) else body
    assert {"hct", "yamato", "ninjavan"} <= {item["code"] for item in items}


async def test_the_stand_in_partner_verifies_and_accepts_a_notice(
    app: FastAPI, worker: Worker, partner: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    async with app.state.db.transaction() as session:
        message_id = await notices.queue_processor_notice(
            session,
            crypto=app.state.crypto,
            now=app.state.clock.now(),
            processor_code="hct",
            event_type="personal_data.corrected",
            data={"records": [{"tracking_number": "QX1"}], "new_values": {"phone": "x"}},
        )
    assert message_id is not None
    await worker.drain()
    out = capsys.readouterr().out
    assert "[hct] personal_data.corrected verified" in out


async def test_its_acknowledgement_is_accepted_by_the_service(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    seeded: dict[str, str],
    partner: list[str],
) -> None:
    async with app.state.db.transaction() as session:
        message_id = await notices.queue_processor_notice(
            session,
            crypto=app.state.crypto,
            now=app.state.clock.now(),
            processor_code="yamato",
            event_type="personal_data.deleted",
            data={"records": [{"tracking_number": "QX2"}]},
        )
    assert message_id is not None
    await worker.drain()
    body, headers = signed_acknowledgement(
        seeded["yamato"], code="yamato", webhook_id=f"msg_{message_id.hex}"
    )
    # The partner signs with its wall clock: the service checks the timestamp against its own.
    app.state.clock.set(datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC))
    response = await client.post("/v1/partner/acknowledgements", content=body, headers=headers)
    assert response.status_code == 201, response.text
    assert json.loads(response.text)["processor"] == "yamato"
