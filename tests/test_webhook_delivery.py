"""Webhooks to processors: signed (verified by the standardwebhooks package), retried, recorded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.clock import FrozenClock
from app.db import Database
from app.models import AuditEntry, OutboxMessage, Processor
from app.outbox.jobs import WorkerContext
from app.outbox.retry import WEBHOOK_RETRY
from app.outbox.worker import Worker
from app.webhooks import processors
from app.webhooks.signing import webhook_id
from app.worker import build_registry
from tests.support.servers import Received, RecordingServer, Reply, closed_port
from tests.support.webhooks import attempts, message, notify, register, verified


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "allow_private_webhooks": True,
        "webhook_timeout_seconds": 0.5,
        "webhook_processor_cache_seconds": 0,
        "privacy_officer_email": "privacy@qxpress.example",
        "email_gateway_url": f"{gateway.url}/email",
        "sms_gateway_url": f"{gateway.url}/sms",
    }


async def audit_actions(db: Database) -> list[str]:
    async with db.sessionmaker() as session:
        rows = await session.exec(select(AuditEntry.action).order_by(sa.column("id")))
        return list(rows.all())


async def test_signed_notice_verifies_with_the_standardwebhooks_package(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
) -> None:
    created = await register(client, staff_headers, code="hct", url=f"{receiver.url}/hooks")
    assert created["secret"].startswith("whsec_")
    data = {"tracking_numbers": ["QX100"], "changes": {"recipient_name": "김민지"}}
    message_id = await notify(db, worker, code="hct", data=data)
    assert message_id is not None

    assert await worker.drain() == 1
    [item] = receiver.requests("/hooks")
    assert item.headers["webhook-id"] == webhook_id(message_id)
    assert item.headers["content-type"] == "application/json"
    assert item.headers["webhook-signature"].startswith("v1,")
    body = verified(created["secret"], item)
    assert body == {
        "type": "personal_data.corrected",
        "timestamp": "2026-11-26T01:00:00Z",
        "data": data,
    }
    with pytest.raises(WebhookVerificationError):  # a tampered body does not verify
        Webhook(created["secret"]).verify(item.body.replace(b"QX100", b"QX101"), item.headers)
    stored = await message(db, message_id)
    assert stored.status == "delivered"
    [attempt] = await attempts(db, message_id)
    assert (attempt.outcome, attempt.status_code, attempt.attempt) == ("delivered", 200, 1)
    assert attempt.latency_ms is not None and attempt.response_bytes == len(b'{"ok": true}')


async def test_during_rotation_both_secrets_verify_then_only_the_new_one(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    old = (await register(client, staff_headers, code="hct", url=receiver.url))["secret"]
    response = await client.post("/v1/processors/hct/rotate-secret", headers=staff_headers("admin"))
    assert response.status_code == 200
    new = response.json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert response.json()["previous_secret_expires_at"] == "2026-11-27T01:00:00Z"

    await notify(db, worker, code="hct")
    await worker.drain()
    [during] = receiver.requests()
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verified(old, during)["type"] == "personal_data.corrected"
    assert verified(new, during)["type"] == "personal_data.corrected"

    clock.advance(timedelta(hours=24, seconds=1))
    receiver.clear()
    await notify(db, worker, code="hct")
    await worker.drain()
    [after] = receiver.requests()
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verified(new, after)
    with pytest.raises(WebhookVerificationError):
        verified(old, after)


async def test_500_then_200_is_retried_after_5_seconds_with_the_same_webhook_id(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    secret = (await register(client, staff_headers, code="hct", url=receiver.url))["secret"]
    receiver.reply_next(Reply(500, "upstream broke"))
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None

    assert await worker.run_once() == 1
    stored = await message(db, message_id)
    assert stored.status == "pending" and stored.attempts == 1
    wait = stored.next_attempt_at - clock.now()
    assert timedelta(seconds=4.5) <= wait <= timedelta(seconds=5.5)
    assert await worker.run_once() == 0  # not due yet

    clock.set(stored.next_attempt_at)
    assert await worker.run_once() == 1
    first, second = receiver.requests()
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == webhook_id(message_id)
    assert first.body == second.body
    verified(secret, second)
    assert (await message(db, message_id)).status == "delivered"
    log = await attempts(db, message_id)
    assert [(a.attempt, a.outcome, a.status_code) for a in log] == [
        (1, "failed", 500),
        (2, "delivered", 200),
    ]
    assert log[0].error == "endpoint answered 500" and log[0].response_bytes == len(
        b"upstream broke"
    )


async def test_a_slow_endpoint_times_out_and_is_retried(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)
    receiver.reply_next(Reply(200, delay=1.5))  # webhook_timeout_seconds is 0.5 here
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    await worker.run_once()
    [attempt] = await attempts(db, message_id)
    assert (attempt.outcome, attempt.error, attempt.status_code) == ("failed", "timeout", None)
    assert attempt.latency_ms is not None and 400 <= attempt.latency_ms < 1400
    assert (await message(db, message_id)).status == "pending"


async def test_429_with_retry_after_is_honoured(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)
    receiver.reply_next(Reply(429, headers={"Retry-After": "120"}))
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    await worker.run_once()
    stored = await message(db, message_id)
    assert stored.next_attempt_at - clock.now() == timedelta(seconds=120)
    assert stored.last_error == "endpoint answered 429"


async def test_503_with_an_http_date_retry_after(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)
    # 10 minutes after the frozen time, as an HTTP date.
    receiver.reply_next(Reply(503, headers={"Retry-After": "Thu, 26 Nov 2026 01:10:00 GMT"}))
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    await worker.run_once()
    stored = await message(db, message_id)
    assert stored.next_attempt_at - clock.now() == timedelta(minutes=10)


async def test_410_disables_the_processor_and_holds_its_notices_until_enabled(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    gateway: RecordingServer,
) -> None:
    secret = (await register(client, staff_headers, code="hct", url=receiver.url))["secret"]
    receiver.reply_next(Reply(410))
    first = await notify(db, worker, code="hct")
    assert first is not None
    await worker.run_once()
    second = await notify(db, worker, code="hct")  # queued after the endpoint went away
    assert second is not None

    response = await client.get("/v1/processors/hct", headers=staff_headers("privacy_officer"))
    body = response.json()
    assert body["state"] == "disabled"
    assert body["disabled_reason"] == "endpoint answered 410 Gone"
    assert body["deliveries"]["held"] == 2
    assert (await message(db, first)).status == "held"
    assert (await message(db, second)).status == "held"
    [attempt] = await attempts(db, first)
    assert (attempt.outcome, attempt.status_code) == ("gone", 410)
    assert "processor.disabled" in await audit_actions(db)

    await worker.drain()  # nothing goes to a disabled processor; the officer is told
    assert len(receiver.requests()) == 1
    [alert] = gateway.requests("/email")
    assert alert.json()["to"] == "privacy@qxpress.example"
    assert "hct" in alert.json()["subject"]

    response = await client.patch(
        "/v1/processors/hct", json={"state": "active"}, headers=staff_headers("admin")
    )
    assert response.status_code == 200 and response.json()["state"] == "active"
    assert await worker.drain() == 2
    sent = receiver.requests()[1:]
    assert sorted(item.headers["webhook-id"] for item in sent) == sorted(
        [webhook_id(first), webhook_id(second)]
    )
    for item in sent:
        verified(secret, item)


async def test_connection_refused_is_a_failed_attempt(
    client: httpx.AsyncClient, staff_headers: Any, db: Database, worker: Worker
) -> None:
    await register(client, staff_headers, code="hct", url=f"http://127.0.0.1:{closed_port()}/x")
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    await worker.run_once()
    [attempt] = await attempts(db, message_id)
    assert (attempt.outcome, attempt.error) == ("failed", "connection failed")
    stored = await message(db, message_id)
    assert stored.status == "pending" and stored.last_error == "connection failed"


async def test_dead_after_the_whole_schedule_alerts_then_replay_delivers(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    gateway: RecordingServer,
    clock: FrozenClock,
) -> None:
    secret = (await register(client, staff_headers, code="hct", url=receiver.url))["secret"]
    receiver.default = Reply(500)
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    started = clock.now()
    waits = []
    for _ in range(WEBHOOK_RETRY.max_attempts - 1):
        assert await worker.run_once(kinds=["webhook"]) == 1
        stored = await message(db, message_id)
        assert stored.status == "pending"
        waits.append((stored.next_attempt_at - clock.now()).total_seconds())
        clock.set(stored.next_attempt_at)
    for wait, planned in zip(waits, WEBHOOK_RETRY.waits, strict=True):
        assert planned * 0.9 <= wait <= planned * 1.1
    assert await worker.run_once(kinds=["webhook"]) == 1
    stored = await message(db, message_id)
    assert stored.status == "dead" and stored.attempts == 10
    assert timedelta(days=2.8) < clock.now() - started < timedelta(days=3.5)
    assert len(receiver.requests()) == 10
    assert len({item.headers["webhook-id"] for item in receiver.requests()}) == 1
    assert "webhook.dead" in await audit_actions(db)
    await worker.drain(kinds=["notification"])
    [alert] = gateway.requests("/email")
    assert webhook_id(message_id) in alert.json()["body"]

    # Replay: same webhook-id, a fresh schedule.
    receiver.default = Reply(200)
    response = await client.post(
        f"/v1/deliveries/{message_id}/replay", headers=staff_headers("privacy_officer")
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending" and response.json()["attempts"] == 0
    assert len(response.json()["attempt_log"]) == 10
    assert await worker.drain() == 1
    last = receiver.requests()[-1]
    assert last.headers["webhook-id"] == webhook_id(message_id)
    verified(secret, last)
    assert (await message(db, message_id)).status == "delivered"


async def test_bulk_replay_of_dead_deliveries(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)
    ids = [await notify(db, worker, code="hct") for _ in range(3)]
    async with db.transaction() as session:  # as if each had run out of tries
        await session.execute(
            sa.update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(status="dead")  # type: ignore[attr-defined]
        )
    response = await client.post(
        "/v1/processors/hct/deliveries/replay", headers=staff_headers("admin")
    )
    assert response.status_code == 200 and response.json() == {"replayed": 3}
    assert await worker.drain() == 3
    assert {item.headers["webhook-id"] for item in receiver.requests()} == {
        webhook_id(i) for i in ids if i
    }


async def test_failing_for_five_days_straight_disables_the_processor(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    clock: FrozenClock,
) -> None:
    await register(client, staff_headers, code="hct", url=f"http://127.0.0.1:{closed_port()}/")
    started = clock.now()
    current = await notify(db, worker, code="hct")
    for _ in range(40):
        assert current is not None
        await worker.run_once(kinds=["webhook"])
        stored = await message(db, current)
        if stored.status == "held":
            break
        if stored.status == "dead":  # the first notice ran out of tries: a later one goes on
            current = await notify(db, worker, code="hct")
            continue
        clock.set(stored.next_attempt_at)
    async with db.sessionmaker() as session:
        processor = (await session.exec(select(Processor).where(Processor.code == "hct"))).one()
    assert processor.state == "disabled"
    assert processor.disabled_reason == "failing for 5 days"
    assert processor.disabled_at is not None
    assert processor.disabled_at - started >= timedelta(days=5)


async def test_a_success_breaks_the_failing_streak(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)
    receiver.reply_next(Reply(500))
    await notify(db, worker, code="hct")
    await worker.run_once()  # fails: the streak starts
    clock.advance(timedelta(minutes=1))
    await worker.run_once()  # succeeds
    clock.advance(timedelta(days=6))
    receiver.reply_next(Reply(500))
    await notify(db, worker, code="hct")
    await worker.run_once()  # one failure six days after a success does not disable
    async with db.sessionmaker() as session:
        processor = (await session.exec(select(Processor).where(Processor.code == "hct"))).one()
    assert processor.state == "active"
    assert processor.failing_since == clock.now()


async def test_each_processor_receives_only_its_own_records(
    client: httpx.AsyncClient, staff_headers: Any, db: Database, worker: Worker
) -> None:
    with RecordingServer() as hct, RecordingServer() as yamato:
        secrets = {
            "hct": (await register(client, staff_headers, code="hct", url=hct.url))["secret"],
            "yamato": (await register(client, staff_headers, code="yamato", url=yamato.url))[
                "secret"
            ],
        }
        sent: dict[str, set[str]] = {"hct": set(), "yamato": set()}
        for n in range(4):
            for code in ("hct", "yamato"):
                message_id = await notify(
                    db, worker, code=code, data={"tracking_numbers": [f"{code}-{n}"]}
                )
                assert message_id is not None
                sent[code].add(webhook_id(message_id))
        assert await worker.drain() == 8
        for code, server in (("hct", hct), ("yamato", yamato)):
            items = server.requests()
            assert {item.headers["webhook-id"] for item in items} == sent[code]
            for item in items:
                [number] = verified(secrets[code], item)["data"]["tracking_numbers"]
                assert number.startswith(f"{code}-")
            other = "yamato" if code == "hct" else "hct"
            with pytest.raises(WebhookVerificationError):
                verified(secrets[other], items[0])


async def test_notices_for_unknown_disabled_and_unsubscribed_processors(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    gateway: RecordingServer,
    clock: FrozenClock,
) -> None:
    # Not registered yet: held, not lost; sent once the processor is registered.
    early = await notify(db, worker, code="ninjavan")
    assert early is not None and (await message(db, early)).status == "held"
    listed = await client.get(
        "/v1/deliveries?processor=ninjavan&status=held", headers=staff_headers("admin")
    )
    assert [item["id"] for item in listed.json()["items"]] == [str(early)]
    assert await worker.run_periodic() is None
    await worker.drain()
    [alert] = gateway.requests("/email")
    assert "ninjavan" in alert.json()["subject"]
    clock.advance(timedelta(minutes=11))
    await worker.run_periodic()  # the daily alert is not repeated
    await worker.drain()
    assert len(gateway.requests("/email")) == 1

    await register(
        client, staff_headers, code="ninjavan", url=receiver.url, events=["personal_data.corrected"]
    )
    assert (await message(db, early)).status == "pending"
    assert await worker.drain() == 1
    assert receiver.requests()[0].headers["webhook-id"] == webhook_id(early)

    # Not subscribed to this event: nothing queued, and the skip is audited.
    assert await notify(db, worker, code="ninjavan", event_type="processing.suspended") is None
    assert "webhook.skipped" in await audit_actions(db)

    # Disabled: held, audited.
    response = await client.patch(
        "/v1/processors/ninjavan", json={"state": "disabled"}, headers=staff_headers("admin")
    )
    assert response.json()["state"] == "disabled"
    held = await notify(db, worker, code="ninjavan")
    assert held is not None and (await message(db, held)).status == "held"
    assert (await audit_actions(db)).count("webhook.held") == 2


async def test_a_notice_claimed_after_its_processor_was_disabled_is_held(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    async with db.transaction() as session:  # disabled behind the registry's back
        await session.execute(
            sa.update(Processor).where(Processor.code == "hct").values(state="disabled")  # type: ignore[arg-type]
        )
    await worker.run_once()
    stored = await message(db, message_id)
    assert stored.status == "held" and stored.attempts == 0
    assert receiver.requests() == []


async def test_ssrf_is_checked_again_at_send_time(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)  # allowed at registration
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    strict = worker.ctx.settings.model_copy(update={"allow_private_webhooks": False})
    ctx = WorkerContext(
        settings=strict,
        db=worker.ctx.db,
        crypto=worker.ctx.crypto,
        clock=worker.ctx.clock,
        http=worker.ctx.http,
    )
    await Worker(ctx, build_registry()).run_once()
    assert receiver.requests() == []
    [attempt] = await attempts(db, message_id)
    assert attempt.outcome == "refused"
    assert "private" in (attempt.error or "")


@pytest.mark.parametrize(
    "host",
    [
        "[::ffff:127.0.0.1]",  # IPv4-mapped: a dual-stack socket reaches 127.0.0.1 with it
        "[::ffff:0:7f00:1]",  # IPv4-translated
        "[::127.0.0.1]",  # IPv4-compatible
        "[64:ff9b::7f00:1]",  # NAT64 (RFC 6052)
        "[2002:7f00:1::1]",  # 6to4
    ],
)
async def test_ipv6_forms_of_a_private_address_are_refused_before_each_send(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    host: str,
) -> None:
    """Registered while private targets were allowed; the send-time check unwraps the IPv4."""
    url = f"http://{host}:{receiver.port}/hook"
    await register(client, staff_headers, code="hct", url=url)
    message_id = await notify(db, worker, code="hct")
    assert message_id is not None
    strict = worker.ctx.settings.model_copy(update={"allow_private_webhooks": False})
    ctx = WorkerContext(
        settings=strict,
        db=worker.ctx.db,
        crypto=worker.ctx.crypto,
        clock=worker.ctx.clock,
        http=worker.ctx.http,
    )
    await Worker(ctx, build_registry()).run_once()
    assert receiver.requests() == []
    [attempt] = await attempts(db, message_id)
    assert attempt.outcome == "refused", attempt.error
    assert "private" in (attempt.error or "")


async def test_two_workers_never_send_the_same_delivery_at_once(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    database_url: str,
) -> None:
    lock = threading.Lock()
    in_flight: set[str] = set()
    overlaps: list[str] = []

    def responder(item: Received) -> Reply:
        key = item.headers["webhook-id"]
        with lock:
            if key in in_flight:
                overlaps.append(key)
            in_flight.add(key)
        threading.Event().wait(0.01)
        with lock:
            in_flight.discard(key)
        return Reply(200)

    with RecordingServer(responder) as server:
        await register(client, staff_headers, code="hct", url=server.url)
        ids = {await notify(db, worker, code="hct") for _ in range(40)}
        small = worker.ctx.settings.model_copy(update={"worker_batch_size": 5})
        loops = []
        for _ in range(2):
            other = Database.connect(database_url, pool_size=4)
            http = httpx.AsyncClient()
            ctx = WorkerContext(
                settings=small,
                db=other,
                crypto=worker.ctx.crypto,
                clock=worker.ctx.clock,
                http=http,
            )
            loops.append((Worker(ctx, build_registry()), other, http))
        try:
            counts = await asyncio.gather(*(loop.drain() for loop, _, _ in loops))
        finally:
            for _, other, http in loops:
                await http.aclose()
                await other.dispose()
        received = [item.headers["webhook-id"] for item in server.requests()]
    assert sum(counts) == 40 and all(counts)
    assert overlaps == []
    assert sorted(received) == sorted(webhook_id(i) for i in ids if i)


async def test_metrics_show_deliveries_by_status_and_the_oldest_pending(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    receiver: RecordingServer,
    clock: FrozenClock,
) -> None:
    await register(client, staff_headers, code="hct", url=receiver.url)
    await notify(db, worker, code="hct")
    await worker.drain()
    await notify(db, worker, code="hct")
    clock.advance(timedelta(minutes=2))
    text = (await client.get("/metrics")).text
    assert 'dsr_webhook_deliveries{processor="hct",status="delivered"} 1.0' in text
    assert 'dsr_webhook_deliveries{processor="hct",status="pending"} 1.0' in text
    assert 'dsr_webhook_oldest_pending_age_seconds{processor="hct"} 120.0' in text
    assert 'dsr_webhook_attempts_last_hour{outcome="delivered"} 1.0' in text
    assert 'dsr_webhook_processors{state="active"} 1.0' in text


async def test_the_per_processor_concurrency_limit_holds(
    client: httpx.AsyncClient, staff_headers: Any, db: Database, worker: Worker
) -> None:
    lock = threading.Lock()
    current = 0
    peak = 0

    def responder(item: Received) -> Reply:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)
        threading.Event().wait(0.03)
        with lock:
            current -= 1
        return Reply(200)

    with RecordingServer(responder) as server:
        await register(client, staff_headers, code="hct", url=server.url)
        for _ in range(12):
            await notify(db, worker, code="hct")
        limited = worker.ctx.settings.model_copy(
            update={"webhook_max_concurrency_per_processor": 3}
        )
        ctx = WorkerContext(
            settings=limited,
            db=worker.ctx.db,
            crypto=worker.ctx.crypto,
            clock=worker.ctx.clock,
            http=worker.ctx.http,
        )
        assert await Worker(ctx, build_registry()).run_once() == 12
    assert peak == 3


async def test_ensure_processors_seeds_the_missing_ones_once(
    db: Database, worker: Worker, receiver: RecordingServer
) -> None:
    seed = [
        {"code": "hct", "name": "HCT", "nation": "Taiwan"},
        {
            "code": "yamato",
            "name": "Yamato",
            "nation": "Japan",
            "events": ["personal_data.deleted"],
        },
    ]
    async with db.transaction() as session:
        first = await processors.ensure_processors(
            session,
            crypto=worker.ctx.crypto,
            now=worker.ctx.clock.now(),
            processors=seed,
            webhook_base_url=f"{receiver.url}/hooks/",
        )
    async with db.transaction() as session:
        again = await processors.ensure_processors(
            session,
            crypto=worker.ctx.crypto,
            now=worker.ctx.clock.now(),
            processors=seed,
            webhook_base_url=receiver.url,
        )
    assert sorted(first) == ["hct", "yamato"] and again == {}
    await notify(db, worker, code="yamato", event_type="personal_data.deleted")
    await worker.drain()
    [item] = receiver.requests()
    assert item.path == "/hooks/yamato"
    assert verified(first["yamato"], item)["type"] == "personal_data.deleted"
