"""Withdrawing the separate consent to provision to third parties given in the app (policy
section 4), like marketing consent (PIPA Art. 37): the purpose is suspended, nothing the app
service still needs is destroyed, and each recipient is told (``processing.suspended``).
Through HTTP, the real worker and loopback receivers, on the demo data.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.db import Database
from app.demo.load import PROVISION_RECIPIENT
from app.outbox.worker import Worker
from tests.support.lifecycle import make_subject
from tests.support.servers import RecordingServer
from tests.test_correction_flow import (  # noqa: F401 - fixtures
    DEMO_PHONE,
    approve,
    demo,
    notices,
    receiver,
    rows,
    secrets,
    settings_overrides,
    status,
)
from tests.test_suspension_flow import allowed, submit


async def test_withdrawing_provision_consent_suspends_it_and_tells_the_recipient(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    receiver: RecordingServer,  # noqa: F811
    secrets: dict[str, str],  # noqa: F811
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    request_id = await submit(client, subject, "consent_withdrawal", ["third_party_provision"])
    assert not await allowed(client, app, "third_party_provision")  # provisional from intake
    await approve(app, client, request_id)
    await worker.drain()
    assert await status(client, subject, request_id) == "completed"
    assert not await allowed(client, app, "third_party_provision")
    assert await allowed(client, app, "app_service")  # the app keeps working
    kept = await rows(
        db, "SELECT count(*) AS n FROM demo.app_installs WHERE phone = :p", p=DEMO_PHONE
    )
    assert kept[0]["n"] == 1  # still needed for the app service: not destroyed
    got = notices(receiver, secrets)
    assert list(got) == [PROVISION_RECIPIENT]
    [notice] = got[PROVISION_RECIPIENT]
    assert notice["type"] == "processing.suspended"
    assert notice["data"]["records"][0]["purposes"] == ["third_party_provision"]
