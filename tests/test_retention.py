"""Retention rules, the retained-records store, crypto-shredding, `dsr purge` and the daily job."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from app.audit import trail
from app.clock import FrozenClock
from app.config import Settings
from app.crypto import Crypto, DecryptionError, open_sealed
from app.db import Database
from app.errors import InvalidInput, NotFound
from app.models import AuditEntry, RetainedRecord, RetentionKey
from app.outbox.worker import Worker
from app.retention import rules as retention_rules
from app.retention import store
from app.retention.rules import RetainedRecordDestroyed, UnknownRetentionRule
from app.retention.store import RetainInput

SUBJECT = "b" * 64
PAYLOAD = {"sender_name": "홍길동", "sender_phone": "+821012345678", "amount": 12000}


@pytest.fixture
def crypto(app: Any) -> Crypto:
    return app.state.crypto  # type: ignore[no-any-return]


async def keep(
    db: Database,
    crypto: Crypto,
    settings: Settings,
    *,
    now: datetime,
    rule: str = "service_calls",
    clock_start: datetime | None = None,
    record_key: str = "QX1001",
    payload: dict[str, Any] | None = None,
    role: str | None = "sender",
    **kwargs: Any,
) -> uuid.UUID:
    async with db.transaction() as session:
        return await store.retain_record(
            session,
            crypto=crypto,
            now=now,
            source="demo",
            collection="deliveries",
            record_key=record_key,
            subject_key=SUBJECT,
            items=["name", "phone"],
            term=retention_rules.retention_rule(settings, rule),
            clock_start=clock_start or now,
            payload=payload or PAYLOAD,
            role=role,
            **kwargs,
        )


async def row_counts(db: Database) -> tuple[int, int]:
    async with db.sessionmaker() as session:
        records = (
            await session.execute(sa.select(sa.func.count()).select_from(RetainedRecord))
        ).scalar_one()
        keys = (
            await session.execute(sa.select(sa.func.count()).select_from(RetentionKey))
        ).scalar_one()
    return records, keys


async def purge_all(db: Database, now: datetime, batch: int = 1000) -> store.PurgeCounts:
    total = store.PurgeCounts()
    while True:
        async with db.transaction() as session:
            counts = await store.purge_due(session, now=now, batch=batch)
        if not counts.destroyed:
            return total
        total.add(counts)


# --- rules -------------------------------------------------------------------------------------


def test_the_policy_table_is_the_default(settings: Settings) -> None:
    rules = retention_rules.retention_rules(settings)
    assert {name: (term.period, term.legal_basis_en) for name, term in rules.items()} == {
        "transactions": ("5y", "Framework Act on National Taxes"),
        "contracts": ("5y", "Act on the Consumer Protection in Electronic Commerce"),
        "complaints": ("3y", "Act on the Consumer Protection in Electronic Commerce"),
        "service_calls": ("3m", "Protection of Communications Secrets Act"),
        "advertising": ("6m", "Act on the Consumer Protection in Electronic Commerce"),
        "access_logs_3m": ("3m", "Protection of Communications Secrets Act"),
        "access_logs_12m": ("12m", "Protection of Communications Secrets Act"),
    }
    assert rules["transactions"].legal_basis.ko == "국세기본법"
    assert retention_rules.retention_rule(settings, "access_logs_12m").months == 12
    with pytest.raises(UnknownRetentionRule):
        retention_rules.retention_rule(settings, "forever")


def test_rules_can_be_overridden_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DSR_RETENTION_RULES",
        '{"complaints": {"period": "4y", "legal_basis_ko": "법", "legal_basis_en": "Law"},'
        ' "pickup_photos": {"period": "1m", "legal_basis_ko": "내규", "legal_basis_en": "Rule"}}',
    )
    rules = retention_rules.retention_rules(Settings())
    assert rules["complaints"].months == 48
    assert rules["pickup_photos"].months == 1
    assert rules["transactions"].months == 60  # defaults kept
    monkeypatch.setenv(
        "DSR_RETENTION_RULES",
        '{"x": {"period": "forever", "legal_basis_ko": "a", "legal_basis_en": "b"}}',
    )
    with pytest.raises(ValueError, match="period"):
        Settings()


@pytest.mark.parametrize(
    ("period", "months"),
    [("1m", 1), ("3m", 3), ("12m", 12), ("1y", 12), ("5y", 60), ("999m", 999), ("999y", 11988)],
)
def test_periods_parse_to_months(period: str, months: int) -> None:
    assert retention_rules.parse_period(period) == months


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("0y", "is zero"),
        ("0m", "is zero"),
        ("00y", "is zero"),
        ("05y", "must be 1 to 999"),
        ("1000m", "must be 1 to 999"),
        ("5", "must be 1 to 999"),
        ("y", "must be 1 to 999"),
        ("5d", "must be 1 to 999"),
        ("5Y", "must be 1 to 999"),
        (" 5y", "must be 1 to 999"),
        ("-1y", "must be 1 to 999"),
        ("", "must be 1 to 999"),
        ("forever", "must be 1 to 999"),
    ],
)
def test_bad_periods_are_refused_naming_the_setting(period: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        retention_rules.parse_period(period, setting="DSR_RETENTION_RULES")
    assert str(caught.value).startswith("DSR_RETENTION_RULES: ")


def test_a_zero_period_stops_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DSR_RETENTION_RULES",
        '{"pickup_photos": {"period": "0y", "legal_basis_ko": "내규", "legal_basis_en": "Rule"}}',
    )
    with pytest.raises(ValueError, match=r"DSR_RETENTION_RULES: period '0y' is zero"):
        Settings()


def test_settings_and_data_map_share_one_rule_type(settings: Settings) -> None:
    from app.datamap.loader import parse_datamap

    overrides = {"complaints": {"period": "4y", "legal_basis_ko": "법", "legal_basis_en": "Law"}}
    configured = Settings(retention_rules=overrides)
    datamap = parse_datamap({}, rules=configured.retention_rules)
    for name, rule in retention_rules.retention_rules(configured).items():
        assert isinstance(datamap.rule(name), retention_rules.RetentionRule)
        assert datamap.rule(name) == rule == retention_rules.retention_rule(configured, name)
    assert datamap.rule("complaints").months == 48
    assert datamap.rule("until_purpose_achieved") is retention_rules.UNTIL_PURPOSE_ACHIEVED
    # The same parser behind both: a rule with a zero period cannot be built either.
    with pytest.raises(ValueError, match="is zero"):
        retention_rules.RetentionRule(rule="x", period="0y", legal_basis={"ko": "법", "en": "Law"})


def test_destroy_after_uses_calendar_months(settings: Settings) -> None:
    start = datetime(2026, 8, 31, 15, 0, tzinfo=UTC)
    assert retention_rules.retention_rule(settings, "advertising").destroy_after(start) == datetime(
        2027, 2, 28, 15, 0, tzinfo=UTC
    )
    assert retention_rules.retention_rule(settings, "transactions").destroy_after(
        datetime(2024, 2, 29, tzinfo=UTC)
    ) == datetime(2029, 2, 28, tzinfo=UTC)
    term = retention_rules.retention_rule(settings, "service_calls")
    assert term.runs_at(start, start + timedelta(days=60))
    assert not term.runs_at(start, datetime(2026, 11, 30, 15, 0, tzinfo=UTC))


# --- store -------------------------------------------------------------------------------------


async def test_retained_payload_is_sealed_with_its_own_key(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock
) -> None:
    first = await keep(db, crypto, settings, now=clock.now(), record_key="QX1")
    second = await keep(db, crypto, settings, now=clock.now(), record_key="QX2")
    async with db.sessionmaker() as session:
        rows = {row.id: row for row in (await session.exec(select(RetainedRecord))).all()}
        keys = {row.id: row for row in (await session.exec(select(RetentionKey))).all()}
    assert set(rows) == set(keys) == {first, second}
    for row in rows.values():
        assert "홍길동".encode() not in row.payload and b"+8210" not in row.payload
        assert row.destroy_after == datetime(2027, 2, 26, 1, 0, tzinfo=UTC)
        assert (row.rule, row.legal_basis_en) == (
            "service_calls",
            "Protection of Communications Secrets Act",
        )
    # Neither the field key nor the master key opens a payload directly.
    for key in (crypto.field_key, crypto.retention_kek):
        with pytest.raises(DecryptionError):
            open_sealed(key, rows[first].payload, aad=f"retained:{first}".encode())
    # Each record has its own data key.
    data_keys = {
        open_sealed(
            crypto.retention_kek, keys[rid].wrapped_key, aad=f"retention-key:{rid}:v1".encode()
        )
        for rid in (first, second)
    }
    assert len(data_keys) == 2
    # A wrapped key moved to another record does not open.
    with pytest.raises(DecryptionError):
        open_sealed(
            crypto.retention_kek, keys[first].wrapped_key, aad=f"retention-key:{second}:v1".encode()
        )


async def test_read_retained_for_lawful_access_is_audited(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock
) -> None:
    request_id = uuid.uuid4()
    record_id = await keep(
        db, crypto, settings, now=clock.now(), rule="transactions", request_id=request_id
    )
    async with db.transaction() as session:
        view = await store.read_retained(
            session,
            crypto=crypto,
            record_id=record_id,
            now=clock.now(),
            actor="officer-1",
            role="privacy_officer",
            reason="tax_audit",
        )
    assert view.payload == PAYLOAD
    assert view.summary.rule == "transactions"
    assert view.summary.legal_basis_ko == "국세기본법"
    assert view.summary.items == ["name", "phone"]
    assert view.summary.request_id == request_id
    async with db.sessionmaker() as session:
        entry = (await session.exec(select(AuditEntry))).one()
    assert (entry.action, entry.actor, entry.target_id) == (
        "retained.read",
        "officer-1",
        str(record_id),
    )
    assert entry.details == {"reason": "tax_audit", "rule": "transactions"}

    async with db.sessionmaker() as session:
        with pytest.raises(InvalidInput):
            await store.read_retained(
                session,
                crypto=crypto,
                record_id=record_id,
                now=clock.now(),
                actor="a",
                role="r",
                reason="홍길동 요청",
            )
        with pytest.raises(NotFound):
            await store.read_retained(
                session,
                crypto=crypto,
                record_id=uuid.uuid4(),
                now=clock.now(),
                actor="a",
                role="r",
                reason="x",
            )


async def test_listing_and_retaining_twice(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock
) -> None:
    request_id = uuid.uuid4()
    first = await keep(
        db, crypto, settings, now=clock.now(), rule="contracts", request_id=request_id
    )
    again = await keep(
        db, crypto, settings, now=clock.now(), rule="contracts", request_id=request_id
    )
    assert first == again
    assert await row_counts(db) == (1, 1)
    # The same delivery seen as its recipient (sent to oneself) is another part, kept apart.
    recipient = await keep(
        db, crypto, settings, now=clock.now(), rule="contracts", role="recipient"
    )
    assert recipient != first
    assert await row_counts(db) == (2, 2)
    async with db.transaction() as session:
        ids = await store.retain_records(
            session,
            crypto=crypto,
            now=clock.now(),
            records=[
                RetainInput(
                    source="demo",
                    collection="counseling",
                    record_key=f"C{n}",
                    subject_key=SUBJECT,
                    items=["inquiry"],
                    term=retention_rules.retention_rule(settings, "complaints"),
                    clock_start=clock.now() - timedelta(days=n),
                    payload={"n": n},
                    request_id=request_id,
                )
                for n in range(3)
            ],
        )
        listed = await store.list_retained(session, subject_keys=[SUBJECT])
        by_request = await store.list_retained(session, request_id=request_id)
        nobody = await store.list_retained(session, subject_keys=["c" * 64])
    assert len(ids) == len(set(ids)) == 3
    assert [s.record_key for s in listed] == ["C2", "C1", "C0", "QX1001", "QX1001"]
    assert len(by_request) == 4 and nobody == []


async def test_retaining_what_is_already_due_is_refused(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock
) -> None:
    with pytest.raises(InvalidInput, match="already over"):
        await keep(
            db, crypto, settings, now=clock.now(), clock_start=clock.now() - timedelta(days=100)
        )
    with pytest.raises(InvalidInput):
        async with db.transaction() as session:
            await store.retain_record(
                session,
                crypto=crypto,
                now=clock.now(),
                source="demo",
                collection="deliveries",
                record_key="QX",
                subject_key=SUBJECT,
                items=["shoe_size"],
                term=retention_rules.retention_rule(settings, "contracts"),
                clock_start=clock.now(),
                payload={},
            )
    assert await row_counts(db) == (0, 0)


# --- purge -------------------------------------------------------------------------------------


async def test_purge_shreds_due_records_and_leaves_the_rest(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock
) -> None:
    due = await keep(
        db, crypto, settings, now=clock.now(), rule="service_calls", record_key="QX-due"
    )
    running = await keep(
        db, crypto, settings, now=clock.now(), rule="advertising", record_key="QX-run"
    )
    async with db.sessionmaker() as session:
        sealed = (await session.get(RetainedRecord, due)).payload  # type: ignore[union-attr]
        wrapped = (await session.get(RetentionKey, due)).wrapped_key  # type: ignore[union-attr]

    # Three months and a day later: the service-call record is due, the advertising one is not.
    clock.advance(timedelta(days=93))
    async with db.sessionmaker() as session:
        assert await store.count_due(session, now=clock.now()) == {"service_calls": 1}
    counts = await purge_all(db, clock.now())
    assert (counts.destroyed, counts.by_rule) == (1, {"service_calls": 1})

    async with db.sessionmaker() as session:
        assert await session.get(RetainedRecord, due) is None
        assert await session.get(RetentionKey, due) is None
        assert await session.get(RetainedRecord, running) is not None
        assert await session.get(RetentionKey, running) is not None
        with pytest.raises(NotFound):
            await store.read_retained(
                session,
                crypto=crypto,
                record_id=due,
                now=clock.now(),
                actor="a",
                role="r",
                reason="x",
            )
        entry = (await session.exec(select(AuditEntry))).one()
        assert await trail.seal_pending(session) == 1
        assert await trail.verify_chain(session) == (1, None)
    assert entry.action == "retention.purged"
    assert entry.details == {"count": 1, "by_rule": {"service_calls": 1}, "record_ids": [str(due)]}
    assert "홍길동" not in str(entry.details)

    # A copy of the row (a backup, a replica) is useless without its key: no other key opens it.
    data_key = open_sealed(crypto.retention_kek, wrapped, aad=f"retention-key:{due}:v1".encode())
    assert open_sealed(data_key, sealed, aad=f"retained:{due}".encode())  # the key did open it
    for key in (crypto.retention_kek, crypto.field_key, os.urandom(32)):
        with pytest.raises(DecryptionError):
            open_sealed(key, sealed, aad=f"retained:{due}".encode())

    assert await purge_all(db, clock.now()) == store.PurgeCounts()


async def test_a_record_whose_key_is_gone_cannot_be_read(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock
) -> None:
    record_id = await keep(db, crypto, settings, now=clock.now())
    async with db.transaction() as session:
        await session.execute(sa.delete(RetentionKey))
    async with db.sessionmaker() as session:
        with pytest.raises(RetainedRecordDestroyed):
            await store.read_retained(
                session,
                crypto=crypto,
                record_id=record_id,
                now=clock.now(),
                actor="a",
                role="r",
                reason="x",
            )


async def test_purge_in_batches(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock
) -> None:
    async with db.transaction() as session:
        await store.retain_records(
            session,
            crypto=crypto,
            now=clock.now(),
            records=[
                RetainInput(
                    source="demo",
                    collection="access_logs",
                    record_key=f"L{n}",
                    subject_key=SUBJECT,
                    items=["ip_address"],
                    term=retention_rules.retention_rule(
                        settings, "access_logs_3m" if n % 2 else "access_logs_12m"
                    ),
                    clock_start=clock.now(),
                    payload={"n": n},
                )
                for n in range(25)
            ],
        )
    clock.advance(timedelta(days=400))
    async with db.transaction() as session:
        first = await store.purge_due(session, now=clock.now(), batch=10)
    assert first.destroyed == 10
    rest = await purge_all(db, clock.now(), batch=10)
    assert rest.destroyed == 15
    assert await row_counts(db) == (0, 0)
    async with db.sessionmaker() as session:
        entries = (await session.exec(select(AuditEntry))).all()
    assert [e.details["count"] for e in entries] == [10, 10, 5]


# --- the daily job -----------------------------------------------------------------------------


async def test_the_worker_purges_once_a_day(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock, worker: Worker
) -> None:
    assert store.PURGE_JOB in worker.registry.periodic
    due_soon = await keep(
        db,
        crypto,
        settings,
        now=clock.now(),
        destroy_after=clock.now() + timedelta(hours=1),
        record_key="A",
    )
    clock.advance(timedelta(hours=2))
    await worker.run_periodic()
    assert await row_counts(db) == (0, 0)

    await keep(
        db,
        crypto,
        settings,
        now=clock.now(),
        destroy_after=clock.now() + timedelta(hours=1),
        record_key="B",
    )
    clock.advance(timedelta(hours=2))
    await worker.run_periodic()  # less than a day since the last run: not run
    assert await row_counts(db) == (1, 1)

    clock.advance(timedelta(hours=21))
    await worker.run_periodic()  # 23 hours: still not
    assert await row_counts(db) == (1, 1)
    clock.advance(timedelta(hours=1))
    await worker.run_periodic()  # a day: run
    assert await row_counts(db) == (0, 0)
    async with db.sessionmaker() as session:
        actors = (await session.exec(select(AuditEntry.actor))).all()
    assert actors == ["worker:retention-purge", "worker:retention-purge"]
    assert due_soon


# --- the CLI -----------------------------------------------------------------------------------


def run_cli(
    args: list[str], settings: Settings, keys: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DSR_")}
    env.update({f"DSR_{name.upper()}": value for name, value in keys.items()})
    env.update(
        {
            "DSR_ENV": "test",
            "DSR_DATABASE_URL": str(settings.database_url),
            "DSR_DATA_DIR": str(tmp_path / "cli"),
            "COLUMNS": "120",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_dsr_purge_dry_run_then_purge(
    db: Database, crypto: Crypto, settings: Settings, keys: dict[str, str], tmp_path: Path
) -> None:
    # Retained long ago (fixed dates, so the CLI's wall clock finds them due) and far ahead.
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    far_ahead = datetime(2100, 1, 1, tzinfo=UTC)
    for n in range(3):
        await keep(db, crypto, settings, now=long_ago, rule="service_calls", record_key=f"OLD{n}")
    await keep(db, crypto, settings, now=long_ago, rule="access_logs_12m", record_key="OLDLOG")
    kept = await keep(db, crypto, settings, now=far_ahead, rule="transactions", record_key="NEW")

    dry = run_cli(["purge", "--dry-run"], settings, keys, tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would destroy 4 records" in dry.stdout
    assert "service_calls" in dry.stdout and "access_logs_12m" in dry.stdout
    assert await row_counts(db) == (5, 5)  # the dry run changed nothing
    async with db.sessionmaker() as session:
        assert (await session.exec(select(AuditEntry))).all() == []

    real = run_cli(["purge", "--batch-size", "2"], settings, keys, tmp_path)
    assert real.returncode == 0, real.stderr
    assert "destroyed 4 records" in real.stdout
    assert "홍길동" not in real.stdout + real.stderr
    assert await row_counts(db) == (1, 1)
    async with db.transaction() as session:
        assert (await store.list_retained(session))[0].id == kept
        entries = (await session.exec(select(AuditEntry))).all()
        assert [(e.actor, e.details["count"]) for e in entries] == [
            ("cli:purge", 2),
            ("cli:purge", 2),
        ]


async def test_many_records_cross_insert_chunks(
    db: Database, crypto: Crypto, settings: Settings, clock: FrozenClock
) -> None:
    term = retention_rules.retention_rule(settings, "access_logs_3m")
    records = [
        RetainInput(
            source="demo",
            collection="access_logs",
            record_key=f"L{n}",
            subject_key=SUBJECT,
            items=["ip_address", "access_time"],
            term=term,
            clock_start=clock.now(),
            payload={"ip": f"10.0.{n // 256}.{n % 256}"},
        )
        for n in range(1005)
    ]
    async with db.transaction() as session:
        ids = await store.retain_records(session, crypto=crypto, now=clock.now(), records=records)
    async with db.transaction() as session:
        again = await store.retain_records(
            session, crypto=crypto, now=clock.now(), records=records[995:]
        )
    assert len(set(ids)) == 1005 and again == ids[995:]
    assert await row_counts(db) == (1005, 1005)
    clock.advance(timedelta(days=95))
    async with db.transaction() as session:
        counts = await store.purge_due(session, now=clock.now(), batch=2000)
    assert counts.by_rule == {"access_logs_3m": 1005}
    assert await row_counts(db) == (0, 0)
