"""Intake throughput: `POST /v1/requests` against a bare FastAPI endpoint doing one INSERT.

Both run in this process behind the same httpx ASGI transport, with the same concurrency,
against the same fresh PostgreSQL database (DSR_TEST_DATABASE_URL when set, else embedded).
The candidate does what intake really does: token check, body validation, idempotency,
duplicate check, encrypted body, the request row, its history event, hash-chained audit
entries and the "received" notice in the outbox, in one transaction. Target: ≥ 0.5 × baseline.

    .venv/bin/python bench/bench_intake.py [--requests 2000] [--concurrency 16]

Prints a table and writes it to docs/BENCHMARKS.md, section "Intake".
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_usage_check import bench_database, measure, write_section  # noqa: E402

from app.clock import FrozenClock  # noqa: E402
from app.config import KEY_FIELDS, Settings, new_key  # noqa: E402
from app.db import plain_url  # noqa: E402
from app.main import create_app  # noqa: E402
from app.subjects import identifiers  # noqa: E402

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
TYPES: list[dict[str, Any]] = [
    {"type": "access"},
    {"type": "deletion", "items": ["email"]},
    {"type": "suspension", "purposes": ["marketing"]},
    {"type": "consent_withdrawal", "purposes": ["marketing"]},
    {
        "type": "correction",
        "corrections": [{"item": "address", "new_value": "서울특별시 강서구 공항대로 247"}],
    },
]


def baseline_app(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI()

    @app.post("/baseline", status_code=201)
    async def insert(body: dict[str, Any]) -> dict[str, Any]:
        async with pool.acquire() as conn:
            row_id = await conn.fetchval(
                "INSERT INTO bench_intake (id, type, received_at) VALUES ($1, $2, now()) "
                "RETURNING id",
                uuid.uuid4(),
                body["type"],
            )
        return {"id": str(row_id)}

    return app


async def subject_tokens(app: FastAPI, count: int) -> list[dict[str, str]]:
    headers = []
    async with app.state.db.transaction() as session:
        for n in range(count):
            value = f"+8210{7000_0000 + n:08d}"
            row = await identifiers.remember_identifier(
                session, crypto=app.state.crypto, kind="phone", value=value, now=NOW
            )
            token = app.state.tokens.issue_subject_token(
                blind_index=row.blind_index,
                identifier_kinds=["phone"],
                now=NOW,
                ttl=timedelta(hours=4),
            )
            headers.append({"Authorization": f"Bearer {token}"})
    return headers


async def main(args: argparse.Namespace) -> None:
    async with bench_database() as url:
        keys = {name: new_key() for name in KEY_FIELDS}
        settings = Settings(
            env="test", database_url=url, run_worker=False, db_pool_size=args.concurrency, **keys
        )  # type: ignore[arg-type]
        app = create_app(settings, clock=FrozenClock(NOW), start_worker=False)
        pool = await asyncpg.create_pool(
            plain_url(url), min_size=args.concurrency, max_size=args.concurrency
        )
        assert pool is not None
        await pool.execute(
            "CREATE TABLE bench_intake (id uuid PRIMARY KEY, type text, received_at timestamptz)"
        )
        async with app.router.lifespan_context(app):
            per_subject = len(TYPES)
            tokens = await subject_tokens(app, -(-args.requests // per_subject))
            ours = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            )
            bare = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=baseline_app(pool)), base_url="http://bench"
            )

            async def send_ours(n: int) -> httpx.Response:
                response = await ours.post(
                    "/v1/requests", json=TYPES[n % per_subject], headers=tokens[n // per_subject]
                )
                return httpx.Response(200 if response.status_code == 201 else 500)

            async def send_bare(n: int) -> httpx.Response:
                response = await bare.post("/baseline", json=TYPES[n % per_subject])
                return httpx.Response(200 if response.status_code == 201 else 500)

            await measure(send_bare, total=200, concurrency=args.concurrency)  # warm up
            baseline = await measure(send_bare, total=args.requests, concurrency=args.concurrency)
            intake = await measure(send_ours, total=args.requests, concurrency=args.concurrency)
            await ours.aclose()
            await bare.aclose()
        await pool.close()

    ratio = intake["rps"] / baseline["rps"]
    table = "\n".join(
        [
            "| endpoint | requests/s | p50 ms | p95 ms | p99 ms |",
            "|---|---:|---:|---:|---:|",
            f"| baseline: bare FastAPI, one asyncpg INSERT | {baseline['rps']:,.0f} | "
            f"{baseline['p50']:.1f} | {baseline['p95']:.1f} | {baseline['p99']:.1f} |",
            f"| `POST /v1/requests` (full intake) | {intake['rps']:,.0f} | {intake['p50']:.1f} | "
            f"{intake['p95']:.1f} | {intake['p99']:.1f} |",
        ]
    )
    body = (
        "## Intake\n\n"
        "`bench/bench_intake.py`: `POST /v1/requests` (token, validation, idempotency and "
        "duplicate checks, encrypted body, request row, history, hash-chained audit, the "
        '"received" notice in the outbox, one transaction) against a bare FastAPI endpoint '
        "doing one asyncpg INSERT, same process, same ASGI transport, same database, "
        f"{args.requests:,} requests each at concurrency {args.concurrency} "
        f"({platform.python_version()}, {platform.machine()}).\n\n"
        f"{table}\n\n"
        f"Ratio: **{ratio:.2f} × baseline** (target ≥ 0.5).\n"
    )
    print(table)
    print(f"\nratio: {ratio:.2f} x baseline (target >= 0.5)")
    if args.write:
        print(f"written to {write_section('Intake', body)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-write", dest="write", action="store_false")
    asyncio.run(main(parser.parse_args()))
