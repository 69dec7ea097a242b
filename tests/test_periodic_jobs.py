"""Periodic jobs run once per interval across any number of workers (a row per job and slot)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from app.clock import FrozenClock
from app.db import Database
from app.outbox.jobs import PeriodicJob, Registry, WorkerContext
from app.outbox.retry import DEFAULT_RETRY, FULFILMENT_RETRY, WEBHOOK_RETRY, RetryPolicy
from app.outbox.worker import Worker
from app.worker import build_registry


def counting_jobs(runs: list[tuple[str, str]], name: str) -> list[PeriodicJob]:
    def job(job_name: str, every: timedelta) -> PeriodicJob:
        async def run(ctx: WorkerContext) -> int:
            runs.append((job_name, name))
            await asyncio.sleep(0.02)  # a run takes a while: the other worker tries meanwhile
            return 1

        return PeriodicJob(job_name, every, run)

    return [job("hourly", timedelta(hours=1)), job("ten-minutes", timedelta(minutes=10))]


async def test_two_workers_run_each_job_once_per_slot(
    worker: Worker, database_url: str, clock: FrozenClock
) -> None:
    runs: list[tuple[str, str]] = []
    loops = []
    for name in ("a", "b"):
        other = Database.connect(database_url, pool_size=2)
        http = httpx.AsyncClient()
        ctx = WorkerContext(
            settings=worker.ctx.settings, db=other, crypto=worker.ctx.crypto, clock=clock, http=http
        )
        loops.append((Worker(ctx, Registry(periodic=counting_jobs(runs, name))), other, http))

    async def rounds(loop: Worker) -> None:
        for _ in range(3):  # a worker's loop asks again and again within one slot
            await loop.run_periodic()

    try:
        for _ in range(6):  # an hour in ten-minute steps
            await asyncio.gather(*(rounds(loop) for loop, _, _ in loops))
            clock.advance(timedelta(minutes=10))
        # A new worker started later finds the slots taken too.
        late = Worker(loops[0][0].ctx, Registry(periodic=counting_jobs(runs, "late")))
        clock.advance(timedelta(minutes=-1))
        await late.run_periodic()
    finally:
        for _, other, http in loops:
            await http.aclose()
            await other.dispose()
    assert [job for job, _ in runs].count("hourly") == 1
    assert [job for job, _ in runs].count("ten-minutes") == 6
    assert not [who for _, who in runs if who == "late"]
    async with worker.ctx.db.sessionmaker() as session:
        slots = (
            await session.execute(
                sa.text("SELECT job, slot, count FROM periodic_run ORDER BY job, slot")
            )
        ).all()
    assert [(job, count) for job, _, count in slots] == [("hourly", 1)] + [("ten-minutes", 1)] * 6
    starts = [slot for job, slot, _ in slots if job == "ten-minutes"]
    assert all(b - a == timedelta(minutes=10) for a, b in itertools.pairwise(starts))


async def test_two_worker_processes_run_each_registered_job_once(
    database_url: str, keys: dict[str, str], tmp_path: Path, db: Database
) -> None:
    """Two `dsr worker --once` processes on one database, started together: each periodic job of
    the composition root runs in one of them (jobs every few seconds may take a second slot)."""
    env = {
        **os.environ,
        "DSR_ENV": "test",
        "DSR_DATABASE_URL": database_url,
        "DSR_LOG_LEVEL": "DEBUG",  # a run that found nothing is logged at DEBUG
        "DSR_LOG_FORMAT": "json",
        **{f"DSR_{name.upper()}": value for name, value in keys.items()},
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--once"],
            cwd=Path(__file__).resolve().parent.parent,
            env={**env, "DSR_DATA_DIR": str(tmp_path / name)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    runs: Counter[str] = Counter()
    for process in processes:
        _, stderr = await asyncio.to_thread(process.communicate, timeout=120)
        assert process.returncode == 0, stderr[-2000:]
        for line in stderr.splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("event") in ("worker.periodic", "worker.periodic_error"):
                runs[entry["job"]] += 1
    registry = build_registry()
    slow = {job.name for job in registry.periodic if job.every >= timedelta(minutes=1)}
    assert slow and slow <= set(runs), sorted(slow - set(runs))
    assert {name: runs[name] for name in slow} == dict.fromkeys(slow, 1)
    async with db.sessionmaker() as session:
        claimed = Counter(
            (await session.execute(sa.text("SELECT job FROM periodic_run"))).scalars()
        )
    assert {name: claimed[name] for name in slow} == dict.fromkeys(slow, 1)


async def test_a_failing_job_is_recorded_and_runs_again_next_slot(
    worker: Worker, clock: FrozenClock
) -> None:
    calls: list[str] = []

    async def broken(ctx: WorkerContext) -> int:
        calls.append("broken")
        raise RuntimeError("bug")

    async def fine(ctx: WorkerContext) -> int:
        calls.append("fine")
        return 0

    loop = Worker(
        worker.ctx,
        Registry(
            periodic=[
                PeriodicJob("broken", timedelta(hours=1), broken),
                PeriodicJob("fine", timedelta(hours=1), fine),
            ]
        ),
    )
    await loop.run_periodic()
    await loop.run_periodic()
    assert calls == ["broken", "fine"]  # the other job still ran; no retry within the slot
    async with worker.ctx.db.sessionmaker() as session:
        error = (
            await session.execute(sa.text("SELECT error FROM periodic_run WHERE job = 'broken'"))
        ).scalar_one()
    assert error == "RuntimeError"
    clock.advance(timedelta(hours=1))
    await loop.run_periodic()
    assert calls == ["broken", "fine", "broken", "fine"]


def test_every_job_uses_one_retry_policy_convention() -> None:
    registry = build_registry()
    assert registry.retry["webhook"] is WEBHOOK_RETRY and registry.retry["job"] is FULFILMENT_RETRY
    policy = RetryPolicy(waits=(10, 100), jitter=0.1, max_attempts=3)
    assert 9 <= policy.delay(1).total_seconds() <= 11  # after the first failed attempt
    assert 90 <= policy.delay(2).total_seconds() <= 110
    assert 90 <= policy.delay(7).total_seconds() <= 110  # the last wait repeats
    assert not policy.exhausted(2) and policy.exhausted(3)
    assert policy.exhausted(1, cap=1)  # a message's own budget wins
    assert not DEFAULT_RETRY.exhausted(1000)  # no cap: retried until an operator acts
    # Webhooks: ten tries over about three days (docs/webhooks.md).
    assert WEBHOOK_RETRY.max_attempts == 10
    assert timedelta(days=2.5) < timedelta(seconds=sum(WEBHOOK_RETRY.waits)) < timedelta(days=3.5)
