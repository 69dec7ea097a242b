"""A real `dsr worker` process killed with SIGKILL mid-batch: every notice still arrives once or
more, and a notice sent twice carries the same webhook-id (the receiver's idempotency key)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.clock import FrozenClock
from app.db import Database
from app.models import OutboxMessage
from app.outbox.worker import Worker
from app.webhooks.signing import webhook_id
from tests.support.servers import Received, RecordingServer, Reply
from tests.support.webhooks import notify, register, verified

ROOT = Path(__file__).resolve().parent.parent
NOTICES = 40


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhooks": True, "webhook_processor_cache_seconds": 0}


async def test_sigkill_mid_batch_loses_nothing(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    clock: FrozenClock,
    database_url: str,
    keys: dict[str, str],
    tmp_path: Path,
) -> None:
    def slow(item: Received) -> Reply:
        threading.Event().wait(0.05)
        return Reply(200)

    with RecordingServer(slow) as receiver:
        secret = (await register(client, staff_headers, code="hct", url=receiver.url))["secret"]
        ids = {await notify(db, worker, code="hct") for _ in range(NOTICES)}
        env = {
            **os.environ,
            "DSR_ENV": "test",
            "DSR_DATABASE_URL": database_url,
            "DSR_DATA_DIR": str(tmp_path / "worker"),
            "DSR_ALLOW_PRIVATE_WEBHOOKS": "true",
            "DSR_WORKER_POLL_SECONDS": "0.05",
            "DSR_WORKER_BATCH_SIZE": "20",
            "DSR_WEBHOOK_MAX_CONCURRENCY_PER_PROCESSOR": "4",
            "DSR_LOG_LEVEL": "WARNING",
            **{f"DSR_{name.upper()}": value for name, value in keys.items()},
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            for _ in range(1500):  # until the worker is busy with its first batch
                if len(receiver.requests()) >= 6 or process.poll() is not None:
                    break
                await asyncio.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            _, stderr = process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
        sent_before_kill = len(receiver.requests())
        assert 6 <= sent_before_kill < NOTICES

        async with db.sessionmaker() as session:
            in_flight = (
                await session.execute(
                    sa.select(sa.func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.status == "pending", OutboxMessage.attempts > 0)  # type: ignore[arg-type]
                )
            ).scalar_one()
        assert in_flight > 0  # killed mid-batch: claimed, leased, not recorded

        # The leases (taken on the real clock) run out; another worker picks the batch up.
        clock.set(datetime.now(UTC) + timedelta(minutes=5))
        await worker.drain()
        received = receiver.requests()

    async with db.sessionmaker() as session:
        statuses = (
            await session.execute(
                sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
            )  # type: ignore[call-overload]
        ).all()
    assert dict(statuses) == {"delivered": NOTICES}

    by_id: dict[str, list[Received]] = defaultdict(list)
    for item in received:
        by_id[item.headers["webhook-id"]].append(item)
    assert set(by_id) == {webhook_id(i) for i in ids if i}
    for copies in by_id.values():
        assert len({copy.body for copy in copies}) == 1  # a duplicate is the same notice
        for copy in copies:
            verified(secret, copy)
