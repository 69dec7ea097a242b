"""The bare baseline endpoints, bench-only (never part of the app): FastAPI + one asyncpg query.

    python bench/baseline_app.py --dsn postgresql://... --port 8101 [--workers 1]

``POST /baseline/insert`` does one INSERT … RETURNING into ``bench_intake`` (created if absent);
``POST /baseline/select`` one primary-key SELECT from ``bench_intake``. Served by uvicorn with
the same defaults as ``dsr serve`` (uvloop and httptools when installed).
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Request

TABLE = "CREATE TABLE IF NOT EXISTS bench_intake (id uuid PRIMARY KEY, type text, at timestamptz)"


def create_app() -> FastAPI:
    dsn = os.environ["BENCH_BASELINE_DSN"]
    size = int(os.environ.get("BENCH_BASELINE_POOL", "10"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
        assert pool is not None
        await pool.execute(TABLE)
        app.state.pool = pool
        app.state.ids = [row["id"] for row in await pool.fetch("SELECT id FROM bench_intake")]
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.post("/baseline/insert", status_code=201)
    async def insert(body: dict[str, Any], request: Request) -> dict[str, Any]:
        async with request.app.state.pool.acquire() as conn:
            row_id = await conn.fetchval(
                "INSERT INTO bench_intake (id, type, at) VALUES ($1, $2, now()) RETURNING id",
                uuid.uuid4(),
                body["type"],
            )
        return {"id": str(row_id)}

    @app.post("/baseline/select")
    async def select(body: dict[str, Any], request: Request) -> dict[str, Any]:
        ids = request.app.state.ids
        async with request.app.state.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id, type FROM bench_intake WHERE id = $1", ids[int(body["n"]) % len(ids)]
            )
        return {"found": row is not None}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pool", type=int, default=10)
    args = parser.parse_args()
    os.environ["BENCH_BASELINE_DSN"] = args.dsn
    os.environ["BENCH_BASELINE_POOL"] = str(args.pool)
    uvicorn.run(
        "baseline_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
    )
