"""Webhook fan-out: signed deliveries per second through the outbox, against a bare httpx loop.

    python bench/bench_webhooks.py [--notices 8000] [--baseline 4000] [--rounds 3]

Uses DSR_TEST_DATABASE_URL when set (a fresh database is made and dropped), else an embedded
PostgreSQL. Receivers are uvicorn subprocesses (bench/webhook_receiver.py) that verify every
signature with the standardwebhooks package. The workers are real `python -m app.cli worker`
processes. The baseline is the same receivers hit by a bare httpx loop (signing, no outbox, no
database), in the same run, interleaved with the outbox rounds; medians are reported, with the
CPU per delivery of each kind of process. Checks: every notice delivered and verified, none
unsigned, one attempt row per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
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


async def scalar(db: Database, query: str) -> int:
    async with db.engine.connect() as connection:
        return int((await connection.execute(sa.text(query))).scalar_one())


DELIVERED = "SELECT count(*) FROM outbox_message WHERE kind='webhook' AND status='delivered'"


async def outbox_round(
    args: argparse.Namespace,
    db: Database,
    crypto: Crypto,
    codes: list[str],
    receivers: list[subprocess.Popen[bytes]],
    workers: list[subprocess.Popen[bytes]],
    already: int,
) -> dict[str, float]:
    """Queue ``args.notices`` notices in one transaction; time from its commit to the last
    delivered row. CPU of every process kind over that time, per delivery."""
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
                    "tracking_numbers": [f"QX{already + n:08d}"],
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
        delivered = await scalar(db, DELIVERED) - already
        if delivered >= args.notices:
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    done = max(delivered, 1)
    return {
        "delivered": delivered,
        "rate": delivered / elapsed,
        "enqueue": enqueue_rate,
        "transactions": (await transactions(db) - commits) / done,
        "sender": (sum(cpu_seconds(p.pid) for p in workers) - workers_cpu) / done,
        "receivers": (sum(cpu_seconds(p.pid) for p in receivers) - receivers_cpu) / done,
        "postgres": (postgres_cpu() - pg_cpu) / done,
    }


async def baseline_round(
    args: argparse.Namespace,
    urls: list[tuple[str, str]],
    key_bytes: dict[str, bytes],
    receivers: list[subprocess.Popen[bytes]],
) -> dict[str, float]:
    receivers_cpu = sum(cpu_seconds(p.pid) for p in receivers)
    client_cpu = time.process_time()
    rate = await baseline(urls, key_bytes, args.baseline, args.concurrency)
    return {
        "delivered": args.baseline,
        "rate": rate,
        "sender": (time.process_time() - client_cpu) / args.baseline,
        "receivers": (sum(cpu_seconds(p.pid) for p in receivers) - receivers_cpu) / args.baseline,
    }


def checked(stats: dict[str, int], expected: int) -> bool:
    """Every delivery verified by the package, each webhook-id once, none invalid or unsigned."""
    return (
        stats.get("valid", 0) == expected
        and stats.get("distinct", 0) == expected
        and stats.get("duplicates", 0) == 0
        and stats.get("invalid", 0) == 0
        and stats.get("unsigned", 0) == 0
    )


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
    bases: list[dict[str, float]] = []
    outs: list[dict[str, float]] = []
    ok = True
    try:
        for port in ports:
            wait_for_port(port)
        key_bytes = {code: secret_key(secret) for code, secret in secrets.items()}
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
        # Interleaved: baseline, outbox, baseline, outbox... so both see the same machine.
        for number in range(args.rounds):
            await reset_receivers(ports)
            bases.append(await baseline_round(args, urls, key_bytes, receivers))
            base_ok = checked(await receiver_stats(ports), args.baseline)
            await reset_receivers(ports)
            outs.append(
                await outbox_round(
                    args, db, crypto, codes, receivers, workers, number * args.notices
                )
            )
            out_ok = checked(await receiver_stats(ports), args.notices)
            out_ok = out_ok and outs[-1]["delivered"] == args.notices
            ok = ok and base_ok and out_ok
            print(
                f"round {number + 1}: baseline {bases[-1]['rate']:,.0f}/s, "
                f"outbox {outs[-1]['rate']:,.0f}/s, "
                f"ratio {outs[-1]['rate'] / bases[-1]['rate']:.2f}, "
                f"checks {'ok' if base_ok and out_ok else 'FAILED'}",
                flush=True,
            )
        delivered = await scalar(db, DELIVERED)
        attempts = await scalar(db, "SELECT count(*) FROM webhook_attempt")
        unattempted = await scalar(
            db,
            "SELECT count(*) FROM outbox_message m WHERE m.kind='webhook' AND NOT EXISTS "
            "(SELECT 1 FROM webhook_attempt a WHERE a.message_id = m.id)",
        )
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=30)
        for process in receivers:
            process.terminate()
            process.wait(timeout=10)
        await db.dispose()

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    ratios = [out["rate"] / base["rate"] for base, out in zip(bases, outs, strict=True)]
    cpu_ratio = med(outs, "sender") / med(bases, "sender")
    print(
        f"\nWebhook fan-out ({args.processors} processors, {args.receivers} receivers, "
        f"{os.cpu_count()} CPUs, {args.rounds} interleaved rounds, medians)"
    )
    header = ("", "messages", "rate", "rounds", "sender CPU ms", "receivers", "postgres")
    print(f"{header[0]:<46} {header[1]:>9} {header[2]:>9}  {header[3]:<22} "
          f"{header[4]:>13} {header[5]:>9} {header[6]:>9}")  # fmt: skip
    rounds_b = ", ".join(f"{row['rate']:,.0f}" for row in bases)
    rounds_o = ", ".join(f"{row['rate']:,.0f}" for row in outs)
    print(f"{'baseline: bare httpx loop, signed, no outbox':<46} {args.baseline:>9} "
          f"{med(bases, 'rate'):>7,.0f}/s  {rounds_b:<22} {med(bases, 'sender') * 1000:>13.2f} "
          f"{med(bases, 'receivers') * 1000:>9.2f} {'':>9}")  # fmt: skip
    print(f"{f'outbox: {args.workers} worker processes, batch {args.batch}':<46} "
          f"{args.notices:>9} {med(outs, 'rate'):>7,.0f}/s  {rounds_o:<22} "
          f"{med(outs, 'sender') * 1000:>13.2f} {med(outs, 'receivers') * 1000:>9.2f} "
          f"{med(outs, 'postgres') * 1000:>9.2f}")  # fmt: skip
    print(
        f"ratio outbox / baseline: {statistics.median(ratios):.2f} (median of the rounds' "
        f"ratios: {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"sender CPU per delivery outbox / baseline: {cpu_ratio:.2f}"
    )
    print(
        f"enqueue (queue_processor_notice, one transaction): {med(outs, 'enqueue'):,.0f}/s; "
        f"database transactions per delivery: {med(outs, 'transactions'):.2f}"
    )
    total = args.rounds * args.notices
    ok = ok and delivered == total and attempts == total and unattempted == 0
    print(
        f"checks: delivered {delivered}/{total}, attempt rows {attempts}, delivered without an "
        f"attempt row {unattempted}; every round: each delivery verified by standardwebhooks, "
        f"each webhook-id once, none invalid, none unsigned: {'yes' if ok else 'NO'}"
    )
    target = statistics.median(ratios) >= 0.9
    print(f"target ratio >= 0.9: {'met' if target else 'not met'}")
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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved baseline/outbox rounds")
    # uvloop, as `dsr worker` uses: the baseline runs on the same event loop as the workers.
    sys.exit(uvloop.run(main(parser.parse_args())))
