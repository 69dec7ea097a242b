"""Fixtures: a real PostgreSQL migrated by Alembic, the app on ASGI, a frozen clock, tokens."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.clock import FrozenClock
from app.config import KEY_FIELDS, Settings, new_key
from app.db import Database
from app.main import create_app
from app.models import metadata
from app.outbox.worker import Worker
from app.security import TokenService
from app.worker import build_context, build_registry
from tests.support.database import fresh_database, server_url
from tests.support.servers import RecordingServer

# A Thursday morning in Seoul (01:00 UTC = 10:00 KST).
FROZEN_AT = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def admin_database_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="dsr-test-pg-") as root:
        url, server = server_url(Path(root))
        yield url
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    async with fresh_database(admin_database_url) as url:
        yield url


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    return {name: new_key() for name in KEY_FIELDS}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(
    database_url: str, keys: dict[str, str], tmp_path: Path, settings_overrides: dict[str, Any]
) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "data_dir": tmp_path / "data",
        "run_worker": False,
        **keys,
        **settings_overrides,
    }
    return Settings(**values)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(FROZEN_AT)


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=clock, start_worker=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def db(app: FastAPI) -> Database:
    return app.state.db  # type: ignore[no-any-return]


@pytest.fixture
def worker(app: FastAPI) -> Worker:
    ctx = build_context(
        settings=app.state.settings,
        db=app.state.db,
        crypto=app.state.crypto,
        clock=app.state.clock,
        http=app.state.http,
        datamap=app.state.datamap,
    )
    return Worker(ctx, build_registry())


@pytest.fixture(autouse=True)
async def _clean_tables(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Each test starts from empty tables (the schema stays)."""
    yield
    if "database_url" not in request.fixturenames:
        return
    url = request.getfixturevalue("database_url")
    database = Database.connect(url, pool_size=1)
    try:
        names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
        async with database.transaction() as session:
            await session.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await database.dispose()


@pytest.fixture
def tokens(settings: Settings) -> TokenService:
    return TokenService(settings)


@pytest.fixture
def staff_headers(tokens: TokenService, clock: FrozenClock) -> Any:
    def make(*roles: str, sub: str = "staff-1") -> dict[str, str]:
        token = tokens.issue_staff_token(
            sub=sub, roles=list(roles), now=clock.now(), ttl=timedelta(hours=1)
        )
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def gateway() -> Iterator[RecordingServer]:
    """A real SMS/e-mail gateway on 127.0.0.1 that records every message."""
    with RecordingServer() as server:
        yield server


@pytest.fixture
def caplog_json(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
