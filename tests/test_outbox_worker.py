"""The outbox and the worker loop: at-least-once, encrypted payloads, leases, retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from app.clock import FrozenClock
from app.db import Database
from app.models import OutboxMessage
from app.outbox import queue as outbox
from app.outbox.jobs import Dead, Outcome, Registry, Retry, Sent, WorkerContext
from app.outbox.worker import Worker


async def queue(db: Database, worker: Worker, payload: dict[str, Any], **kwargs: Any) -> Any:
    async with db.transaction() as session:
        return await outbox.enqueue(
            session,
            crypto=worker.ctx.crypto,
            now=worker.ctx.clock.now(),
            kind=kwargs.pop("kind", "probe"),
            topic=kwargs.pop("topic", "t"),
            payload=payload,
            **kwargs,
        )


async def load(db: Database, message_id: Any) -> OutboxMessage:
    async with db.sessionmaker() as session:
        return (
            await session.exec(select(OutboxMessage).where(OutboxMessage.id == message_id))
        ).one()


def with_handler(worker: Worker, handler: Any, **registry: Any) -> Worker:
    return Worker(worker.ctx, Registry(handlers={"probe": handler}, **registry))


async def test_payload_is_encrypted_and_delivered_once(db: Database, worker: Worker) -> None:
    seen: list[Any] = []

    async def handler(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        seen.append(payload)
        return Sent()

    message_id = await queue(db, worker, {"to": "+821012345678", "code": "123456"})
    raw = (await load(db, message_id)).payload
    assert b"+821012345678" not in raw and b"123456" not in raw

    loop = with_handler(worker, handler)
    assert await loop.drain() == 1
    assert await loop.drain() == 0
    assert seen == [{"to": "+821012345678", "code": "123456"}]
    stored = await load(db, message_id)
    assert stored.status == "delivered" and stored.attempts == 1


async def test_retry_then_dead_after_max_attempts(
    db: Database, worker: Worker, clock: FrozenClock
) -> None:
    dead: list[str] = []

    async def failing(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        return Retry("gateway said 503")

    async def alert(message: OutboxMessage, error: str, ctx: WorkerContext) -> None:
        dead.append(error)

    message_id = await queue(db, worker, {"n": 1}, max_attempts=3)
    loop = with_handler(worker, failing, on_dead={"probe": alert})
    for attempt in (1, 2):
        assert await loop.run_once() == 1
        stored = await load(db, message_id)
        assert stored.status == "pending" and stored.attempts == attempt
        assert stored.next_attempt_at > clock.now()
        assert await loop.run_once() == 0  # not due until the backoff passes
        clock.advance(timedelta(hours=1))
    assert await loop.run_once() == 1
    stored = await load(db, message_id)
    assert stored.status == "dead"
    assert stored.last_error == "gateway said 503"
    assert dead == ["gateway said 503"]

    async with db.transaction() as session:
        assert await outbox.requeue(session, message_id=message_id, now=clock.now())
    assert (await load(db, message_id)).status == "pending"


async def test_a_crashed_worker_leaves_the_message_to_be_claimed_again(
    db: Database, worker: Worker, clock: FrozenClock
) -> None:
    message_id = await queue(db, worker, {"n": 1})
    async with db.transaction() as session:  # a worker claims, then dies before recording
        claimed = await outbox.claim_due(
            session, now=clock.now(), limit=10, lease=timedelta(seconds=60)
        )
    assert [m.id for m in claimed] == [message_id]

    async def handler(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        return Sent()

    loop = with_handler(worker, handler)
    assert await loop.run_once() == 0  # still leased
    clock.advance(timedelta(seconds=61))
    assert await loop.run_once() == 1
    stored = await load(db, message_id)
    assert stored.status == "delivered" and stored.attempts == 2


async def test_two_claims_never_take_the_same_row(
    db: Database, worker: Worker, clock: FrozenClock
) -> None:
    for n in range(10):
        await queue(db, worker, {"n": n})
    async with db.sessionmaker() as first, db.sessionmaker() as second:
        a = await outbox.claim_due(first, now=clock.now(), limit=6, lease=timedelta(seconds=60))
        b = await outbox.claim_due(second, now=clock.now(), limit=6, lease=timedelta(seconds=60))
        assert len(a) == 6 and len(b) == 4
        assert not {m.id for m in a} & {m.id for m in b}
        await first.commit()
        await second.commit()


async def test_dedupe_key_queues_once(db: Database, worker: Worker) -> None:
    first = await queue(db, worker, {"n": 1}, dedupe_key="request:1:received")
    second = await queue(db, worker, {"n": 2}, dedupe_key="request:1:received")
    assert first is not None and second is None
    async with db.sessionmaker() as session:
        count = (
            await session.execute(sa.select(sa.func.count()).select_from(OutboxMessage))
        ).scalar()
    assert count == 1


async def test_handler_exception_is_retried_not_lost(db: Database, worker: Worker) -> None:
    async def broken(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        raise KeyError("bug")

    message_id = await queue(db, worker, {"n": 1})
    await with_handler(worker, broken).run_once()
    stored = await load(db, message_id)
    assert stored.status == "pending"
    assert stored.last_error == "handler error: KeyError"


async def test_unknown_kind_is_dead_with_a_reason(db: Database, worker: Worker) -> None:
    message_id = await queue(db, worker, {"n": 1}, kind="nobody-handles-this")
    await worker.run_once()
    stored = await load(db, message_id)
    assert stored.status == "dead"
    assert "no handler" in (stored.last_error or "")


@pytest.mark.parametrize("outcome", [Dead("refused")])
async def test_dead_outcome_is_final(db: Database, worker: Worker, outcome: Outcome) -> None:
    async def handler(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        return outcome

    message_id = await queue(db, worker, {"n": 1})
    await with_handler(worker, handler).drain()
    assert (await load(db, message_id)).status == "dead"


async def test_a_success_and_what_it_records_commit_together(
    db: Database, worker: Worker, clock: FrozenClock
) -> None:
    """``Sent(record=...)`` is written by the kind's recorder in the transaction that marks the
    message delivered: both or neither (a webhook's attempt row and its delivered mark)."""
    recorded: list[int] = []
    seen_elsewhere: list[str] = []

    async def handler(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        return Sent(record=payload["n"])

    async def recorder(session: Any, records: list[Any]) -> None:
        statuses = (
            await session.execute(sa.text("SELECT DISTINCT status FROM outbox_message"))
        ).scalars()
        assert list(statuses) == ["delivered"]  # marked in this very transaction
        async with db.engine.connect() as other:  # not yet committed for anyone else
            query = sa.text("SELECT DISTINCT status FROM outbox_message")
            seen_elsewhere.extend((await other.execute(query)).scalars())
        recorded.extend(records)

    async def broken(session: Any, records: list[Any]) -> None:
        raise RuntimeError("database went away")

    ids = [await queue(db, worker, {"n": n}) for n in range(3)]
    with pytest.raises(RuntimeError):
        await with_handler(worker, handler, recorders={"probe": broken}).run_once()
    assert {(await load(db, i)).status for i in ids} == {"pending"}  # nothing half-recorded

    clock.advance(timedelta(seconds=61))  # the lease runs out: claimed again, not lost
    assert await with_handler(worker, handler, recorders={"probe": recorder}).drain() == 3
    assert sorted(recorded) == [0, 1, 2]
    assert seen_elsewhere == ["pending"]
    assert {(await load(db, i)).status for i in ids} == {"delivered"}


async def test_a_record_without_a_recorder_is_refused_not_dropped(
    db: Database, worker: Worker
) -> None:
    async def handler(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
        return Sent(record="attempt row")

    message_id = await queue(db, worker, {"n": 1})
    with pytest.raises(LookupError):
        await with_handler(worker, handler).run_once()
    assert (await load(db, message_id)).status == "pending"
