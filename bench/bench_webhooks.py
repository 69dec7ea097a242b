"""Webhook fan-out: signed deliveries per second through the outbox, against a bare httpx loop.

    python bench/bench_webhooks.py [--notices 6000] [--workers 2] [--receivers 2]

Uses DSR_TEST_DATABASE_URL when set (a fresh database is made and dropped), else an embedded
PostgreSQL. Receivers are uvicorn subprocesses (bench/webhook_receiver.py) that verify every
signature with the standardwebhooks package. The workers are real `python -m app.cli worker`
processes. The baseline is the same receivers hit by a bare httpx loop (signing, no outbox, no
database), in the same run. Checks: every notice delivered and verified, none unsigned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import KEY_FIELDS, Settings, new_key  # noqa: E402
from app.crypto import Crypto  # noqa: E402
from app.db import Database  # noqa: E402
from app.webhooks import notices, processors  # noqa: E402
from app.webhooks.signing import event_body, secret_key, signed_headers  # noqa: E402
from tests.support.database import fresh_database, server_url  # noqa: E402

EVENTS = processors.EVENT_TYPES


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU time of every PostgreSQL process on the machine (the server does the database work)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"receiver on {port} did not start")


async def transactions(db: Database) -> int:
    """Transactions committed in this database so far (pg_stat_database)."""
    async with db.engine.connect() as connection:
        query = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        return int((await connection.execute(sa.text(query))).scalar_one())


async def receiver_stats(ports: list[int]) -> dict[str, int]:
    total: dict[str, int] = {}
    async with httpx.AsyncClient() as http:
        for port in ports:
            stats = (await http.get(f"http://127.0.0.1:{port}/stats")).json()
            for key, value in stats.items():
                total[key] = total.get(key, 0) + value
    return total


async def reset_receivers(ports: list[int]) -> None:
    async with httpx.AsyncClient() as http:
        for port in ports:
            await http.post(f"http://127.0.0.1:{port}/reset")


async def baseline(
    urls: list[tuple[str, str]], keys: dict[str, bytes], count: int, concurrency: int
) -> float:
    """A bare loop: sign and POST with one httpx client, no outbox, no database."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    now = datetime.now(UTC)
    failures = 0

    async def run(http: httpx.AsyncClient) -> None:
        nonlocal failures
        while True:
            try:
                n = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            code, url = urls[n % len(urls)]
            body = event_body(
                event_type=EVENTS[0], occurred_at=now, data={"tracking_numbers": [f"B{n}"]}
            )
            headers = signed_headers(
                [keys[code]],
                msg_id=f"msg_{uuid.uuid4().hex}",
                timestamp=int(time.time()),
                body=body,
            )
            headers["content-type"] = "application/json"
            response = await http.post(url, content=body, headers=headers)
            if response.status_code != 200:
                failures += 1

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits, timeout=15) as http:
        started = time.perf_counter()
        await asyncio.gather(*(run(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"baseline: {failures} requests failed")
    return count / elapsed


async def main(args: argparse.Namespace) -> int:
    keys = {name: new_key() for name in KEY_FIELDS}
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        admin_url, embedded = server_url(Path(tmp))
        try:
            async with fresh_database(admin_url) as url:
                return await run(args, url, keys, Path(tmp))
        finally:
            if embedded is not None:
                embedded.cleanup()  # type: ignore[attr-defined]


async def run(args: argparse.Namespace, url: str, keys: dict[str, str], tmp: Path) -> int:
    settings = Settings(env="test", database_url=url, data_dir=tmp / "data", **keys)  # type: ignore[arg-type]
    crypto = Crypto.from_settings(settings)
    db = Database.connect(url, pool_size=4)
    ports = [free_port() for _ in range(args.receivers)]
    codes = [f"carrier-{n}" for n in range(args.processors)]
    now = datetime.now(UTC)
    async with db.transaction() as session:
        secrets: dict[str, str] = {}
        for index, code in enumerate(codes):
            port = ports[index % len(ports)]
            secrets |= await processors.ensure_processors(
                session,
                crypto=crypto,
                now=now,
                processors=[{"code": code, "name": code, "nation": "KR"}],
                webhook_base_url=f"http://127.0.0.1:{port}",
            )
    urls = [
        (code, f"http://127.0.0.1:{ports[i % len(ports)]}/{code}") for i, code in enumerate(codes)
    ]
    env = {**os.environ, "BENCH_SECRETS": json.dumps(secrets), "PYTHONPATH": str(ROOT)}
    receivers = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "webhook_receiver.py"), str(port)], env=env
        )
        for port in ports
    ]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            wait_for_port(port)

        key_bytes = {code: secret_key(secret) for code, secret in secrets.items()}
        receivers_cpu = sum(cpu_seconds(p.pid) for p in receivers)
        client_cpu = time.process_time()
        base_rate = await baseline(urls, key_bytes, args.baseline, args.concurrency)
        base_cpu = {
            "sender": (time.process_time() - client_cpu) / args.baseline,
            "receivers": (sum(cpu_seconds(p.pid) for p in receivers) - receivers_cpu)
            / args.baseline,
        }
        base_stats = await receiver_stats(ports)
        await reset_receivers(ports)

        worker_env = {
            **os.environ,
            "DSR_ENV": "test",
            "DSR_DATABASE_URL": url,
            "DSR_DATA_DIR": str(tmp / "data"),
            "DSR_ALLOW_PRIVATE_WEBHOOKS": "true",
            "DSR_LOG_LEVEL": "WARNING",
            "DSR_WORKER_POLL_SECONDS": "0.05",
            "DSR_WORKER_BATCH_SIZE": str(args.batch),
            "DSR_WORKER_LEASE_SECONDS": "120",
            "DSR_WEBHOOK_MAX_CONCURRENCY_PER_PROCESSOR": str(args.per_processor),
            "DSR_WEBHOOK_MAX_CONCURRENCY": str(args.in_flight),
            "DSR_DB_POOL_SIZE": "20",
            **{f"DSR_{name.upper()}": value for name, value in keys.items()},
        }
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    *os.environ.get("BENCH_WORKER_PREFIX", "").split(),
                    "-m",
                    "app.cli",
                    "worker",
                ],
                env=worker_env,
                cwd=ROOT,
            )
            for _ in range(args.workers)
        ]
        await asyncio.sleep(3)  # imports and the first (empty) poll

        started = time.perf_counter()
        async with db.transaction() as session:
            for n in range(args.notices):
                await notices.queue_processor_notice(
                    session,
                    crypto=crypto,
                    now=datetime.now(UTC),
                    processor_code=codes[n % len(codes)],
                    event_type=EVENTS[n % len(EVENTS)],
                    data={
                        "tracking_numbers": [f"QX{n:08d}"],
                        "changes": {"recipient_name": "김민지"},
                    },
                    request_ref=uuid.uuid4(),
                )
        enqueue_rate = args.notices / (time.perf_counter() - started)

        commits = await transactions(db)
        receivers_cpu = sum(cpu_seconds(p.pid) for p in receivers)
        workers_cpu = sum(cpu_seconds(p.pid) for p in workers)
        pg_cpu = postgres_cpu()
        started = time.perf_counter()
        deadline = started + args.timeout
        delivered = 0
        while time.perf_counter() < deadline:
            async with db.engine.connect() as session:
                delivered = (
                    await session.execute(
                        sa.text(
                            "SELECT count(*) FROM outbox_message"
                            " WHERE kind='webhook' AND status='delivered'"
                        )
                    )
                ).scalar_one()
            if delivered >= args.notices:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        rate = delivered / elapsed
        done = max(delivered, 1)
        commits_per_delivery = (await transactions(db) - commits) / done
        outbox_cpu = {
            "sender": (sum(cpu_seconds(p.pid) for p in workers) - workers_cpu) / done,
            "receivers": (sum(cpu_seconds(p.pid) for p in receivers) - receivers_cpu) / done,
            "postgres": (postgres_cpu() - pg_cpu) / done,
        }
        stats = await receiver_stats(ports)
        async with db.engine.connect() as session:
            attempts = (
                await session.execute(sa.text("SELECT count(*) FROM webhook_attempt"))
            ).scalar_one()
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=30)
        for process in receivers:
            process.terminate()
            process.wait(timeout=10)
        await db.dispose()

    rows = [
        ("baseline: bare httpx loop, signed, no outbox", f"{args.baseline}", f"{base_rate:,.0f}/s"),
        (
            f"outbox: {args.workers} worker processes, batch {args.batch}",
            f"{args.notices}",
            f"{rate:,.0f}/s",
        ),
        ("ratio outbox / baseline", "", f"{rate / base_rate:.2f}"),
        (
            "enqueue (queue_processor_notice, one transaction)",
            f"{args.notices}",
            f"{enqueue_rate:,.0f}/s",
        ),
    ]
    width = max(len(row[0]) for row in rows)
    print(
        f"\nWebhook fan-out ({args.processors} processors, {args.receivers} receivers, "
        f"{os.cpu_count()} CPUs)"
    )
    print(f"{'':{width}}  {'messages':>9}  {'rate':>10}")
    for label, count, value in rows:
        print(f"{label:{width}}  {count:>9}  {value:>10}")
    print(
        "\nCPU per delivery (ms): "
        f"baseline sender {base_cpu['sender'] * 1000:.2f}, "
        f"receivers {base_cpu['receivers'] * 1000:.2f}; "
        f"outbox workers {outbox_cpu['sender'] * 1000:.2f}, receivers "
        f"{outbox_cpu['receivers'] * 1000:.2f}, postgres {outbox_cpu['postgres'] * 1000:.2f}"
    )
    print(f"database transactions per delivery: {commits_per_delivery:.2f}")
    print(
        f"checks: delivered {delivered}/{args.notices}, verified {stats.get('valid', 0)}, "
        f"distinct ids {stats.get('distinct', 0)}, duplicates {stats.get('duplicates', 0)}, "
        f"invalid {stats.get('invalid', 0)}, unsigned {stats.get('unsigned', 0)}, "
        f"attempt rows {attempts}; baseline verified {base_stats.get('valid', 0)}"
    )
    ok = (
        delivered == args.notices
        and stats.get("distinct", 0) == args.notices
        and stats.get("invalid", 0) == 0
        and stats.get("unsigned", 0) == 0
    )
    print(f"none lost, none unsigned, every signature verified: {'yes' if ok else 'NO'}")
    print(f"target >= 1,000 signed deliveries/s: {'met' if rate >= 1000 else 'not met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=8000)
    parser.add_argument("--baseline", type=int, default=4000)
    parser.add_argument("--processors", type=int, default=8)
    parser.add_argument("--receivers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--per-processor", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=4, help="per worker process")
    parser.add_argument("--concurrency", type=int, default=4, help="baseline loop")
    parser.add_argument("--timeout", type=float, default=120)
    # uvloop, as `dsr worker` uses: the baseline runs on the same event loop as the workers.
    sys.exit(uvloop.run(main(parser.parse_args())))
