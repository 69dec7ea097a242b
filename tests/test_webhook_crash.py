"""Real `dsr worker` processes under faults: every notice still arrives once or more, and a
notice sent twice carries the same webhook-id (the receiver's idempotency key).

One worker killed mid-batch; then a fan-out of 2,000 notices through SIGKILLs, every database
connection terminated, and the receiver down then up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
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
from app.webhooks import notices
from app.webhooks.signing import webhook_id
from tests.support import pii_scan
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


FANOUT = 2000


def _worker_env(database_url: str, keys: dict[str, str], data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DSR_ENV": "test",
        "DSR_DATABASE_URL": database_url,
        "DSR_DATA_DIR": str(data_dir),
        "DSR_ALLOW_PRIVATE_WEBHOOKS": "true",
        "DSR_WORKER_POLL_SECONDS": "0.05",
        "DSR_WORKER_BATCH_SIZE": "50",
        # A killed worker's batch is claimed again after this long.
        "DSR_WORKER_LEASE_SECONDS": "5",
        "DSR_WEBHOOK_PROCESSOR_CACHE_SECONDS": "0",
        "DSR_LOG_LEVEL": "WARNING",
        **{f"DSR_{name.upper()}": value for name, value in keys.items()},
    }


async def _until(condition: Any, *, seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_fanout_survives_kills_dropped_connections_and_a_receiver_outage(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    clock: FrozenClock,
    database_url: str,
    keys: dict[str, str],
    tmp_path: Path,
) -> None:
    """2,000 notices through real `dsr worker`s: two SIGKILLs, every database connection
    terminated mid-run, the receiver down then up at the same address. About 30 s alone."""
    started = time.monotonic()
    receivers = [RecordingServer().start()]  # the same address, before and after the outage
    port = receivers[0].port
    secret = (await register(client, staff_headers, code="hct", url=receivers[0].url))["secret"]
    ids: list[uuid.UUID] = []
    for _ in range(FANOUT // 500):  # a few big transactions: queueing is not under test
        async with db.transaction() as session:
            for _ in range(500):
                queued = await notices.queue_processor_notice(
                    session,
                    crypto=worker.ctx.crypto,
                    now=clock.now(),
                    processor_code="hct",
                    event_type="personal_data.corrected",
                    data={"tracking_numbers": [f"QX{len(ids)}"]},
                )
                assert queued is not None
                ids.append(queued)

    env = _worker_env(database_url, keys, tmp_path / "worker")

    env["DSR_LOG_LEVEL"] = "INFO"  # a line per attempt, for the privacy scan below
    logs: list[Path] = []

    def start() -> subprocess.Popen[bytes]:
        logs.append(tmp_path / f"worker-{len(logs)}.log")
        with logs[-1].open("wb") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def count() -> int:
        return sum(len(server.requests()) for server in receivers)

    def mark(what: str) -> None:
        landed.append(count())
        faults.append(f"{what} at {count()} ({time.monotonic() - started:.0f} s)")

    faults: list[str] = []
    landed: list[int] = []  # notices received when each fault struck
    workers = [start(), start()]
    try:
        # 1. SIGKILL a worker mid-fan-out; another takes its place.
        # (Waits are generous for a loaded machine; the faults land wherever the count is.)
        await _until(lambda: count() >= FANOUT // 5, seconds=60)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=10)
        workers.append(start())
        mark("SIGKILL worker")

        # 2. Every connection to the database terminated (a failover, a proxy restart).
        await _until(lambda: count() >= 2 * FANOUT // 5, seconds=20)
        async with db.sessionmaker() as session:
            terminated = (
                await session.execute(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            ).scalar_one()
        mark(f"{terminated} connections terminated")
        assert terminated > 0

        # 3. The receiver goes down for 2 s, then comes back at the same address.
        await _until(lambda: count() >= 3 * FANOUT // 5, seconds=20)
        receivers[-1].stop()
        mark("receiver down")
        await asyncio.sleep(2)
        assert count() == landed[-1], "nothing is received while the receiver is down"
        receivers.append(RecordingServer(port=port).start())
        mark("receiver up")

        # 4. A second SIGKILL, of a worker that lived through the terminated connections.
        await _until(lambda: count() >= 4 * FANOUT // 5, seconds=20)
        assert workers[1].poll() is None, "a worker survives its connections being terminated"
        workers[1].send_signal(signal.SIGKILL)
        workers[1].wait(timeout=10)
        mark("SIGKILL worker")
        await _until(lambda: count() >= FANOUT, seconds=20)
    finally:
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)

    # Each fault struck mid-fan-out, not after the last notice (a test that cannot fail).
    assert all(received < FANOUT for received in landed), faults

    by_workers = count()  # what the dsr worker processes sent, each attempt logged
    # What the subprocesses left (leases of the killed, retries after the outage): another
    # worker finishes it once their times come (the frozen clock is moved past them).
    try:
        for _ in range(6):
            clock.set(datetime.now(UTC) + timedelta(hours=1 + _))
            await worker.drain()
    finally:
        receivers[-1].stop()
    mark("drained")
    received = [item for server in receivers for item in server.requests()]

    async with db.sessionmaker() as session:
        statuses = dict(
            (
                await session.execute(
                    sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)  # type: ignore[call-overload]
                )
            ).all()
        )
    assert statuses == {"delivered": FANOUT}, (statuses, faults)  # none stuck, none dead

    by_id: dict[str, list[Received]] = defaultdict(list)
    for item in received:
        by_id[item.headers["webhook-id"]].append(item)
    assert set(by_id) == {webhook_id(i) for i in ids}, faults  # every notice arrived
    duplicates = sum(len(copies) - 1 for copies in by_id.values())
    for copies in by_id.values():
        assert len({copy.body for copy in copies}) == 1  # a duplicate is the same notice
    for copies in by_id.values():  # every signature, by the standardwebhooks package
        verified(secret, copies[0])
    # What the workers wrote goes through the suite's privacy scan like every in-process line.
    lines = sum(
        pii_scan.scan_output(log.read_text("utf-8"), f"dsr worker ({log.name})") for log in logs
    )
    # A line per attempt (and one per message handled), less what a SIGKILL cut off: the
    # scan read the workers' logs.
    assert lines >= by_workers // 2 > 0, (lines, by_workers)
    print(f"fan-out: {FANOUT} queued, {len(by_id)} delivered, {duplicates} duplicates; {faults}")
