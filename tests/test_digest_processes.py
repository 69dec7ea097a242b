"""The daily digest goes once a day with two real worker processes (``dsr worker``) on one
database: each process started at the same moment, then again in a later slot of the same day.

The in-process tests (tests/test_support_reports.py) drive the digest's rules with a frozen
clock; this one runs the command operators run, on the system clock, as two separate programs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.clock import FrozenClock
from app.config import KEY_FIELDS, Settings
from app.db import Database
from tests.support.lifecycle import AGENT, make_subject, new_request, staff
from tests.support.servers import RecordingServer

OFFICER_MAIL = "privacy@example.com"


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "auto_approve_access": False,
        "email_gateway_url": f"{gateway.url}/email",
        "sms_gateway_url": f"{gateway.url}/sms",
        "privacy_officer_email": OFFICER_MAIL,
        "staff_email_template": "{sub}@staff.example.com",
        "sla_digest_hour": 0,  # whatever the hour the test runs at
    }


def worker_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    env.update(
        {
            "DSR_ENV": "test",
            "DSR_DATABASE_URL": settings.database_url or "",
            "DSR_DATA_DIR": str(data_dir),
            "DSR_EMAIL_GATEWAY_URL": settings.email_gateway_url or "",
            "DSR_SMS_GATEWAY_URL": settings.sms_gateway_url or "",
            "DSR_PRIVACY_OFFICER_EMAIL": OFFICER_MAIL,
            "DSR_STAFF_EMAIL_TEMPLATE": "{sub}@staff.example.com",
            "DSR_SLA_DIGEST_HOUR": "0",
            **{f"DSR_{name.upper()}": str(getattr(settings, name)) for name in KEY_FIELDS},
        }
    )
    return env


async def two_workers_at_once(env: dict[str, str], cwd: Path) -> list[str]:
    """Start two `dsr worker --once` processes together; their output once both have exited."""
    command = [sys.executable, "-m", "app.cli", "worker", "--once"]
    processes = [
        await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = []
    for process in processes:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, out.decode()[-3000:]
        outputs.append(out.decode())
    return outputs


def digests(gateway: RecordingServer) -> list[str]:
    return sorted(
        item.json()["to"]
        for item in gateway.requests("/email")
        if item.json()["template"] == "sla_digest"
    )


async def test_two_worker_processes_send_each_digest_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    clock: FrozenClock,
    db: Database,
    settings: Settings,
    gateway: RecordingServer,
    tmp_path: Path,
) -> None:
    # Received 8 days ago by the system clock: due by the end of the day after tomorrow.
    clock.set(datetime.now(UTC) - timedelta(days=8))
    soon = await new_request(client, await make_subject(app, "+821070000011"), "correction")
    await new_request(client, await make_subject(app, "+821070000012"), "deletion")
    await client.post(f"/v1/staff/requests/{soon}/take", headers=staff(app, *AGENT, sub="kim"))
    env = worker_env(settings, tmp_path / "worker")
    root = Path(__file__).resolve().parents[1]

    outputs = await two_workers_at_once(env, root)
    assert digests(gateway) == ["kim@staff.example.com", OFFICER_MAIL]
    async with db.sessionmaker() as session:
        runs = (
            await session.execute(
                sa.text("SELECT count(*) FROM periodic_run WHERE job = 'sla.daily-digest'")
            )
        ).scalar_one()
    assert runs == 1  # one process claimed the slot, the other saw it taken

    # A later slot of the same day (the slot rows gone, as after ten minutes): both processes
    # run the job again, and the day's digest is not sent twice.
    async with db.transaction() as session:
        await session.execute(sa.text("DELETE FROM periodic_run"))
    outputs += await two_workers_at_once(env, root)
    assert digests(gateway) == ["kim@staff.example.com", OFFICER_MAIL]
    officer_mail = next(
        item.json() for item in gateway.requests("/email") if item.json()["to"] == OFFICER_MAIL
    )
    assert soon.replace("-", "")[:8].upper() in officer_mail["body"]
    for output in outputs:  # the workers' own log lines name no one
        assert "+8210" not in output and "010-" not in output
