"""Retention purge (crypto-shredding) throughput against a plain DELETE in the same run.

Seeds N retained records through `retain_records` (each sealed with its own data key), keeps a
copy, and then, from the same starting state each time (restored and vacuumed):
- baseline: one plain `DELETE FROM retained_record WHERE destroy_after <= now` of the same rows
  (no keys, no batches, no audit);
- candidate: `purge_due` in committed batches, as `dsr purge` and the daily job run it: select the
  due ids, delete their data keys, delete the rows, one hash-chained audit entry per batch.

    .venv/bin/python bench/bench_purge.py [--records 40000] [--batch 1000 5000]

Target: ≥ 20,000 records/s. Prints a table and writes docs/BENCHMARKS.md, "Retention purge".
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
# SQLModel nudges every session.execute() towards exec(); not a concern here.
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_usage_check import bench_database, write_section  # noqa: E402

from app.config import KEY_FIELDS, Settings, new_key  # noqa: E402
from app.crypto import Crypto  # noqa: E402
from app.db import Database, plain_url  # noqa: E402
from app.retention import rules, store  # noqa: E402

RETAINED_AT = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
PURGE_AT = datetime(2027, 6, 1, 1, 0, tzinfo=UTC)  # every seeded record is due
SECTION = "Retention purge"
TARGET = 20_000
RULES = ("service_calls", "advertising", "access_logs_3m", "access_logs_12m")


async def seed(db: Database, settings: Settings, crypto: Crypto, count: int) -> float:
    terms = [rules.retention_rule(settings, rule) for rule in RULES]
    started = time.perf_counter()
    for chunk in range(0, count, 5000):
        records = [
            store.RetainInput(
                source="demo",
                collection="deliveries",
                record_key=f"QX{n:09d}",
                subject_key=f"{n % 997:064x}",
                items=["name", "phone", "address"],
                term=terms[n % len(terms)],
                clock_start=RETAINED_AT - timedelta(minutes=n % 1440),
                payload={
                    "sender_name": "홍길동",
                    "sender_phone": "+821012345678",
                    "address": "서울특별시 강서구 공항대로 247",
                    "amount": n,
                },
            )
            for n in range(chunk, min(count, chunk + 5000))
        ]
        async with db.transaction() as session:
            await store.retain_records(session, crypto=crypto, now=RETAINED_AT, records=records)
    return count / (time.perf_counter() - started)


async def restore(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE retained_record, retention_key, audit_entry")
    await conn.execute("INSERT INTO retained_record SELECT * FROM stash_record")
    await conn.execute("INSERT INTO retention_key SELECT * FROM stash_key")
    await conn.execute("VACUUM ANALYZE retained_record")
    await conn.execute("VACUUM ANALYZE retention_key")
    await conn.execute("VACUUM ANALYZE audit_entry")


async def plain_delete(conn: asyncpg.Connection) -> tuple[int, float]:
    started = time.perf_counter()
    status = await conn.execute("DELETE FROM retained_record WHERE destroy_after <= $1", PURGE_AT)
    return int(status.split()[-1]), time.perf_counter() - started


async def purge(db: Database, batch: int) -> tuple[int, float]:
    started = time.perf_counter()
    total = 0
    while True:
        async with db.transaction() as session:
            counts = await store.purge_due(session, now=PURGE_AT, batch=batch, actor="bench")
        if not counts.destroyed:
            return total, time.perf_counter() - started
        total += counts.destroyed


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[float]] = {}
    async with bench_database() as url:
        settings = Settings(
            env="test", database_url=url, **{name: new_key() for name in KEY_FIELDS}
        )  # type: ignore[arg-type]
        crypto = Crypto.from_settings(settings)
        db = Database.connect(url, pool_size=2)
        conn = await asyncpg.connect(plain_url(url))
        try:
            seed_rate = await seed(db, settings, crypto, args.records)
            await conn.execute("CREATE TABLE stash_record AS SELECT * FROM retained_record")
            await conn.execute("CREATE TABLE stash_key AS SELECT * FROM retention_key")
            for _ in range(args.rounds):  # interleaved, so drift hits both alike
                await restore(conn)
                count, elapsed = await plain_delete(conn)
                assert count == args.records, count
                results.setdefault("baseline", []).append(count / elapsed)
                for batch in args.batch:
                    await restore(conn)
                    count, elapsed = await purge(db, batch)
                    assert count == args.records, count
                    left = await conn.fetchval(
                        "SELECT (SELECT count(*) FROM retained_record)"
                        " + (SELECT count(*) FROM retention_key)"
                    )
                    assert left == 0, left
                    results.setdefault(f"purge:{batch}", []).append(count / elapsed)
        finally:
            await conn.close()
            await db.dispose()

    base = max(results["baseline"])
    table = [
        "| operation | batch | records/s | vs baseline | target ≥ 20,000/s |",
        "|---|---:|---:|---:|---|",
        f"| plain DELETE of the same rows (baseline) | all | {base:,.0f} | 1.00 | |",
    ]
    for batch in args.batch:
        rate = max(results[f"purge:{batch}"])
        verdict = "met" if rate >= TARGET else "**not met**"
        table.append(
            f"| `purge_due`: keys, then rows, + audit entry | {batch:,} | {rate:,.0f} "
            f"| {rate / base:.2f} | {verdict} |"
        )
    note = (
        f"{args.records:,} retained records (4 rules), best of {args.rounds} rounds from the same "
        f"restored and vacuumed state. Seeding through `retain_records` (a data key, two "
        f"AES-GCM seals and two rows per record) ran at {seed_rate:,.0f} records/s."
    )
    machine = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    body = "\n".join(
        [
            f"## {SECTION}",
            "",
            "`python bench/bench_purge.py` — crypto-shredding of due retained records in",
            "committed batches (`dsr purge`, the daily worker job) against one plain DELETE.",
            "",
            *table,
            "",
            note,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine} (2 shared cores).",
        ]
    )
    print("\n".join(table))
    print(note)
    if not args.no_write:
        print(f"wrote {write_section(SECTION, body)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    asyncio.run(main(parser.parse_args()))
