"""Idle workers wake when a message is queued (LISTEN/NOTIFY), not at the next poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from app.db import plain_url
from app.notifications import messages
from app.outbox.worker import Worker
from tests.support.servers import RecordingServer

# Far longer than any wait below: a notice that arrives in time was not found by polling.
POLL_SECONDS = 60.0


@pytest.fixture
def settings_overrides(gateway: RecordingServer, tmp_path: Path) -> dict[str, Any]:
    return {
        "worker_poll_seconds": POLL_SECONDS,
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
    }


async def listening(database_url: str, count: int) -> None:
    """Wait until ``count`` workers listen (their first round is done: they are idle)."""
    admin = await asyncpg.connect(plain_url(database_url))
    try:
        for _ in range(300):
            found = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'dsr-worker-listen'"
            )
            if found >= count:
                return
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    raise AssertionError(f"{count} workers are not listening")


@pytest.fixture
async def running(worker: Worker, database_url: str) -> AsyncIterator[Worker]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(stop))
    await listening(database_url, 1)
    yield worker
    stop.set()
    await asyncio.wait_for(task, timeout=10)


async def queue_sms(app: FastAPI, text: str) -> None:
    async with app.state.db.transaction() as session:
        await messages.queue_notice(
            session,
            crypto=app.state.crypto,
            now=app.state.clock.now(),
            channel="sms",
            destination="+821012345678",
            template="verification_code",
            variables={"code": text, "minutes": 5},
        )


async def arrives(gateway: RecordingServer, count: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if len(gateway.requests("/sms")) >= count:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} notices did not arrive within {within} s")


async def test_an_idle_worker_sends_a_queued_notice_at_once(
    app: FastAPI, running: Worker, gateway: RecordingServer
) -> None:
    await queue_sms(app, "111111")
    assert await arrives(gateway, 1, within=5) < 5


async def test_a_rolled_back_queue_wakes_nobody_and_sends_nothing(
    app: FastAPI, running: Worker, gateway: RecordingServer
) -> None:
    with pytest.raises(RuntimeError):
        async with app.state.db.transaction() as session:
            await messages.queue_notice(
                session,
                crypto=app.state.crypto,
                now=app.state.clock.now(),
                channel="sms",
                destination="+821012345678",
                template="verification_code",
                variables={"code": "000000", "minutes": 5},
            )
            raise RuntimeError("the change failed")
    await queue_sms(app, "222222")
    await arrives(gateway, 1, within=5)
    await asyncio.sleep(0.3)
    assert len(gateway.requests("/sms")) == 1


async def test_the_worker_listens_again_after_its_connection_was_dropped(
    app: FastAPI, running: Worker, gateway: RecordingServer, database_url: str
) -> None:
    admin = await asyncpg.connect(plain_url(database_url))
    try:
        dropped = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'dsr-worker-listen'"
        )
    finally:
        await admin.close()
    assert dropped == 1
    await listening(database_url, 1)  # woken by the loss, the worker claims and listens again
    await queue_sms(app, "333333")
    assert await arrives(gateway, 1, within=5) < 5


async def test_two_idle_workers_share_a_burst_and_send_each_notice_once(
    app: FastAPI, running: Worker, gateway: RecordingServer, database_url: str
) -> None:
    second = Worker(running.ctx, running.registry)
    stop = asyncio.Event()
    task = asyncio.create_task(second.run_forever(stop))
    try:
        await listening(database_url, 2)
        for n in range(20):
            await queue_sms(app, f"{n:06d}")
        await arrives(gateway, 20, within=10)
        await asyncio.sleep(0.3)
        codes = sorted(item.json()["variables"]["code"] for item in gateway.requests("/sms"))
        assert codes == [f"{n:06d}" for n in range(20)]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
