"""Usage-check throughput and latency against a baseline measured in the same run.

Baseline: a bare FastAPI endpoint doing one asyncpg primary-key SELECT. Candidate: the real
`POST /v1/usage-checks` (middleware, service token, identifier normalisation, blind indexes, the
union of two partial-index lookups). Both run in this process behind the same httpx ASGI
transport, with the same concurrency, against the same fresh PostgreSQL database
(DSR_TEST_DATABASE_URL when set, else the embedded server).

    .venv/bin/python bench/bench_usage_check.py [--requests 4000] [--concurrency 16]

Prints a table and writes it to docs/BENCHMARKS.md, section "Usage check".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI, Request

ROOT = Path(__file__).resolve().parent.parent
# SQLModel nudges every session.execute() towards exec(); not a concern here.
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(ROOT))

from app.clock import FrozenClock  # noqa: E402
from app.config import KEY_FIELDS, Settings, new_key  # noqa: E402
from app.db import plain_url  # noqa: E402
from app.deps import ServicePrincipal  # noqa: E402
from app.main import create_app  # noqa: E402
from app.security import TokenService  # noqa: E402
from tests.support.database import fresh_database, server_url  # noqa: E402

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
SECTION = "Usage check"


@asynccontextmanager
async def bench_database() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as root:
        admin, server = server_url(Path(root))
        try:
            async with fresh_database(admin) as url:
                yield url
        finally:
            if server is not None:
                server.cleanup()  # type: ignore[attr-defined]


def phone(n: int) -> str:
    return f"010-{1000 + n // 10000:04d}-{n % 10000:04d}"


async def seed(pool: asyncpg.Pool, app: FastAPI, subjects: int) -> None:
    """Every 10th subject has a pending correction, every 7th a suspended purpose."""
    crypto = app.state.crypto
    restrictions, suspensions = [], []
    for n in range(subjects):
        digits = phone(n).replace("-", "")
        key = crypto.blind_index("phone", "+82" + digits[1:])
        if n % 10 == 0:
            for item in ("address", "name"):
                restrictions.append((uuid.uuid4(), key, item, uuid.uuid4(), NOW))
        if n % 7 == 0:
            suspensions.append((uuid.uuid4(), key, "marketing", uuid.uuid4(), False, NOW))
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "processing_restriction",
            records=restrictions,
            columns=["id", "subject_key", "item", "request_id", "created_at"],
        )
        await conn.copy_records_to_table(
            "processing_suspension",
            records=suspensions,
            columns=["id", "subject_key", "purpose", "request_id", "consent_withdrawal", "since"],
        )
        await conn.execute("ANALYZE processing_restriction; ANALYZE processing_suspension")


def add_probes(app: FastAPI) -> None:
    """Routes on the bench's own app instance that stop after each stage of a usage check."""

    @app.post("/bench/auth")
    async def auth(_principal: ServicePrincipal) -> dict[str, Any]:
        return {}

    @app.post("/bench/connection")
    async def connection_only(_principal: ServicePrincipal, request: Request) -> dict[str, Any]:
        async with request.app.state.db.autocommit() as connection:
            await connection.fetchval("SELECT 1")
        return {}

    # First in the route list, where the usage check is (app/main.py): routing matches in
    # order, and a probe at the end would pay for passing every other route.
    probes = [
        route for route in app.router.routes if getattr(route, "path", "").startswith("/bench/")
    ]
    app.router.routes[:] = probes + [route for route in app.router.routes if route not in probes]


def baseline_app(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> FastAPI:
    app = FastAPI()

    @app.post("/baseline")
    async def lookup(body: dict[str, Any]) -> dict[str, Any]:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id, item FROM processing_restriction WHERE id = $1",
                ids[int(body["n"]) % len(ids)],
            )
        return {"found": row is not None}

    return app


async def measure(
    send: Callable[[int], Awaitable[httpx.Response]], *, total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(total))
    failures = 0

    async def runner() -> None:
        nonlocal failures
        for n in counter:
            started = time.perf_counter()
            response = await send(n)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{failures} requests failed")
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "rps": total / elapsed,
        "p50": quantiles[49] * 1000,
        "p95": quantiles[94] * 1000,
        "p99": quantiles[98] * 1000,
    }


# The load average when the run began: what "same machine" meant for this run's figures.
LOAD_AT_START = os.getloadavg()[0]


def measured_on() -> str:
    """Where and when, for the line under a table: the ratios compare within one run."""
    machine = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    return (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}, {os.cpu_count()} cores"
        f" (load average {LOAD_AT_START:.2f} when the run began; the load generator, the servers"
        " and PostgreSQL share those cores)."
    )


def write_section(title: str, body: str) -> Path:
    """Replace (or append) the `## title` section of docs/BENCHMARKS.md."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures from `bench/`.\n"
    lines = text.rstrip("\n").split("\n")
    header = f"## {title}"
    if header in lines:
        start = lines.index(header)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = [*body.rstrip("\n").split("\n"), ""]
    else:
        lines += ["", *body.rstrip("\n").split("\n")]
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
    return path


async def main(args: argparse.Namespace) -> None:
    async with bench_database() as url:
        keys = {name: new_key() for name in KEY_FIELDS}
        settings = Settings(
            env="test", database_url=url, run_worker=False, db_pool_size=args.concurrency, **keys
        )  # type: ignore[arg-type]
        app = create_app(settings, clock=FrozenClock(NOW), start_worker=False)
        add_probes(app)
        pool = await asyncpg.create_pool(
            plain_url(url), min_size=args.concurrency, max_size=args.concurrency
        )
        assert pool is not None
        async with app.router.lifespan_context(app):
            await seed(pool, app, args.subjects)
            ids = [r["id"] for r in await pool.fetch("SELECT id FROM processing_restriction")]
            token = TokenService(settings).issue_staff_token(
                sub="bench", roles=["service"], now=NOW, ttl=timedelta(hours=4)
            )
            headers = {"Authorization": f"Bearer {token}"}
            rng = random.Random(7)
            purposes = ["delivery", "marketing", "counseling", "customs_clearance"]
            bodies = [
                {
                    "identifiers": {"phone": phone(rng.randrange(args.subjects))},
                    "purpose": rng.choice(purposes),
                    **({"items": ["address", "phone"]} if n % 2 else {}),
                }
                for n in range(args.requests)
            ]
            real = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            )
            bare = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=baseline_app(pool, ids)), base_url="http://bench"
            )
            async with real, bare:

                async def check(n: int) -> httpx.Response:
                    return await real.post(
                        "/v1/usage-checks", json=bodies[n % len(bodies)], headers=headers
                    )

                async def baseline(n: int) -> httpx.Response:
                    return await bare.post("/baseline", json={"n": n})

                blocked = 0
                for body in bodies[:500]:
                    response = await real.post("/v1/usage-checks", json=body, headers=headers)
                    blocked += not response.json()["allowed"]
                warm = max(200, args.requests // 10)
                await measure(baseline, total=warm, concurrency=args.concurrency)
                await measure(check, total=warm, concurrency=args.concurrency)
                results: dict[tuple[str, int], list[dict[str, float]]] = {}
                for concurrency, total in (
                    (1, args.requests // 3),
                    (args.concurrency, args.requests),
                ):
                    for _ in range(args.rounds):  # interleaved, so drift hits both alike
                        for name, send in (("baseline", baseline), ("usage", check)):
                            results.setdefault((name, concurrency), []).append(
                                await measure(send, total=total, concurrency=concurrency)
                            )
                # Where the time goes, one request at a time.
                stages: dict[str, Callable[[int], Awaitable[httpx.Response]]] = {
                    "GET /healthz (middleware and routing only)": lambda n: real.get("/healthz"),
                    "+ service-token verification": lambda n: real.post(
                        "/bench/auth", headers=headers
                    ),
                    "+ an autocommit connection running `SELECT 1`": lambda n: real.post(
                        "/bench/connection", headers=headers
                    ),
                    "POST /v1/usage-checks (all of it)": check,
                }
                for _ in range(args.rounds):
                    for name, send in stages.items():
                        results.setdefault((name, 0), []).append(
                            await measure(send, total=args.requests // 6, concurrency=1)
                        )
        await pool.close()

    def best(name: str, concurrency: int) -> dict[str, float]:
        return max(results[(name, concurrency)], key=lambda r: r["rps"])

    table = [
        "| endpoint | concurrency | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for concurrency in (1, args.concurrency):
        base, usage = best("baseline", concurrency), best("usage", concurrency)
        ratios.append(usage["rps"] / base["rps"])
        for name, r in (
            ("bare FastAPI + one asyncpg PK SELECT (baseline)", base),
            ("POST /v1/usage-checks", usage),
        ):
            table.append(
                f"| {name} | {concurrency} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p95']:.2f} "
                f"| {r['p99']:.2f} |"
            )
    ratio = " and ".join(
        f"{value:.2f} at concurrency {c}"
        for value, c in zip(ratios, (1, args.concurrency), strict=True)
    )
    breakdown = [
        "| stage (concurrency 1) | p50 ms | req/s |",
        "|---|---:|---:|",
        *(
            f"| {name} | {best(name, 0)['p50']:.2f} | {best(name, 0)['rps']:,.0f} |"
            for name in stages
        ),
    ]
    summary = (
        f"Throughput ratio usage check / baseline: **{ratio}** "
        f"({args.requests // 3} and {args.requests} requests, best of {args.rounds} rounds; "
        f"{args.subjects:,} subjects, 10 % with a pending correction, "
        f"14 % with a suspended purpose; {blocked} of the first 500 checks blocked)."
    )
    body = "\n".join(
        [
            f"## {SECTION}",
            "",
            "`python bench/bench_usage_check.py` — both endpoints in one process behind the same",
            "httpx ASGI transport, same database, interleaved rounds. The usage check includes the",
            "middleware, service-token verification, phone normalisation, blind indexes and the",
            "union of the two partial-index lookups; it writes nothing.",
            "",
            *table,
            "",
            summary,
            "",
            "Where the time goes (probe routes added to the benchmark's own app instance, each",
            "stopping after one more stage of the check):",
            "",
            *breakdown,
            "",
            "The check runs one statement straight on asyncpg over its autocommit read",
            "connection (no `BEGIN`/`COMMIT`, no SQLAlchemy execute), and the pool no longer",
            "pings on checkout (`pool_pre_ping` spent three round trips, `BEGIN`, `;`,",
            "`ROLLBACK`, on every checkout; a checkout hook now drops connections asyncpg saw",
            "closed, at no cost). Each round trip costs this machine about 0.4 ms of CPU in",
            "system calls, so round trips are the unit of cost here. The statement takes single",
            "values only (the keys as two text parameters, the items filtered after): given an",
            "array, `= ANY($1::text[])`, PostgreSQL planned every execution anew (about 0.05 ms of",
            "the round trip) instead of keeping the prepared statement's generic plan. A 010",
            "mobile number is normalised without `phonenumbers`' general parser (21 µs → 0.3 µs,",
            "checked against it for all 10,000 middle groups). The principal is one dependency",
            "(the `HTTPBearer` scheme that also checks the role); the answer is serialised once.",
            "",
            measured_on(),
        ]
    )
    print("\n".join(table))
    print(summary)
    print("\n".join(breakdown))
    if not args.no_write:
        print(f"wrote {write_section(SECTION, body)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    asyncio.run(main(parser.parse_args()))
