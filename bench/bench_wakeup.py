"""Commit → notice at a loopback receiver, idle worker: LISTEN/NOTIFY against polling only.

A real worker loop (`Worker.run_forever`, poll interval 1 s) sends SMS notices to a recording
gateway on 127.0.0.1. Each sample commits one transaction that queues one notice while the
worker is idle (a random pause first), and times from the commit returning to the gateway
receiving the notice. Baseline: the same worker with the wake-up off (`worker_listen=False`),
which finds the notice at its next poll.

    .venv/bin/python bench/bench_wakeup.py [--samples 60]

Target: p50 ≤ 50 ms, p99 ≤ 250 ms with the wake-up.
Prints a table and writes it to docs/BENCHMARKS.md, section "Commit to notice".
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_usage_check import bench_database, measured_on, write_section  # noqa: E402

from app.clock import SystemClock  # noqa: E402
from app.config import KEY_FIELDS, Settings, new_key  # noqa: E402
from app.crypto import Crypto  # noqa: E402
from app.datamap.loader import load_configured_datamap  # noqa: E402
from app.db import Database  # noqa: E402
from app.notifications import messages  # noqa: E402
from app.outbox.worker import Worker  # noqa: E402
from app.worker import build_context, build_registry  # noqa: E402
from tests.support.servers import Received, RecordingServer, Reply  # noqa: E402

SECTION = "Commit to notice"


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def run_mode(url: str, keys: dict[str, str], *, listen: bool, samples: int) -> list[float]:
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    def responder(item: Received) -> Reply:
        with lock:
            arrived[item.json()["variables"]["code"]] = time.perf_counter()
        return Reply(200, {"ok": True})

    with RecordingServer(responder) as gateway:
        settings = Settings(
            env="test",
            database_url=url,
            sms_gateway_url=f"{gateway.url}/sms",
            worker_poll_seconds=1.0,
            worker_listen=listen,
            **keys,
        )  # type: ignore[arg-type]
        db = Database.connect(url, pool_size=4)
        crypto = Crypto.from_settings(settings)
        async with httpx.AsyncClient() as http:
            ctx = build_context(
                settings=settings,
                db=db,
                crypto=crypto,
                clock=SystemClock(),
                http=http,
                datamap=load_configured_datamap(settings),
            )
            worker = Worker(ctx, build_registry())
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run_forever(stop))
            await asyncio.sleep(2.0)  # first round and periodic jobs done: idle
            latencies: list[float] = []
            rng = random.Random(13)
            for n in range(samples):
                await asyncio.sleep(rng.uniform(0.3, 1.3))
                code = f"{n:06d}"
                async with db.transaction() as session:
                    await messages.queue_notice(
                        session,
                        crypto=crypto,
                        now=datetime.now(UTC),
                        channel="sms",
                        destination="+821012345678",
                        template="verification_code",
                        variables={"code": code, "minutes": 5},
                    )
                committed = time.perf_counter()
                for _ in range(5000):  # up to 10 s
                    with lock:
                        if code in arrived:
                            break
                    await asyncio.sleep(0.002)
                latencies.append((arrived[code] - committed) * 1000)
            stop.set()
            await asyncio.wait_for(task, timeout=10)
        await db.dispose()
    return latencies


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[float]] = {}
    async with bench_database() as url:
        keys = {name: new_key() for name in KEY_FIELDS}
        results["polling only (baseline, poll 1 s)"] = await run_mode(
            url, keys, listen=False, samples=args.samples
        )
        results["LISTEN/NOTIFY wake-up (poll 1 s as fallback)"] = await run_mode(
            url, keys, listen=True, samples=args.samples
        )
    table = ["| worker | notices | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for name, samples in results.items():
        table.append(
            f"| {name} | {len(samples)} | {statistics.median(samples):.1f} | "
            f"{quantile(samples, 0.99):.1f} | {max(samples):.1f} |"
        )
    woken = results["LISTEN/NOTIFY wake-up (poll 1 s as fallback)"]
    verdict = "met" if statistics.median(woken) <= 50 and quantile(woken, 0.99) <= 250 else "missed"
    text = "\n".join(
        [
            f"## {SECTION}",
            "",
            "`python bench/bench_wakeup.py` — one idle worker loop, one SMS notice queued per",
            "committed transaction at random intervals; time from the commit to the recording",
            "gateway on 127.0.0.1 receiving the notice.",
            "",
            *table,
            "",
            f"Target p50 ≤ 50 ms, p99 ≤ 250 ms: **{verdict}**.",
            "",
            measured_on(),
        ]
    )
    print("\n".join(table))
    print(f"target: {verdict}")
    if args.write:
        print(f"wrote {write_section(SECTION, text)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--no-write", dest="write", action="store_false")
    asyncio.run(main(parser.parse_args()))
