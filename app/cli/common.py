"""Helpers shared by CLI commands: settings, the database, error exits."""

from __future__ import annotations

import asyncio
import signal
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TypeVar

import typer

from app.config import ConfigError, Settings, check_production, ensure_keys, get_settings
from app.db import Database, database_url, stop_embedded
from app.demo.state import load_state
from app.observability import configure_logging

T = TypeVar("T")


@dataclass
class ConsoleOptions:
    """Set once by the root `dsr` callback (`dsr --verbose …`), read by every command."""

    verbose: bool = False


CONSOLE = ConsoleOptions()


def set_verbose(verbose: bool) -> None:
    CONSOLE.verbose = verbose
    if not verbose:
        # platformdirs warns on every start of the embedded server when there is no session bus
        # (containers, ssh); it falls back to /tmp and nothing is wrong.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def read_settings() -> Settings:
    """Settings from the environment, nothing written; exits with the reason."""
    try:
        return get_settings()
    except (ConfigError, ValueError) as exc:
        typer.secho(f"configuration error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


def load_settings() -> Settings:
    """Settings from the environment, keys filled (dev) or checked (prod); exits with the reason."""
    try:
        settings = ensure_keys(read_settings())
        check_production(settings)
    except ConfigError as exc:
        typer.secho(f"configuration error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    fmt = settings.log_format or ("text" if settings.env == "dev" else "json")
    configure_logging(settings.log_level, fmt=fmt, verbose=CONSOLE.verbose)
    return settings


def with_demo_webhooks(settings: Settings, *, demo: bool = False) -> Settings:
    """In dev, allow the stand-in partner's 127.0.0.1 URLs when serving the demo (``--demo``,
    or a data dir that `dsr serve --demo` or `dsr demo` loaded before)."""
    if settings.env != "dev" or settings.allow_private_webhooks:
        return settings
    if demo or load_state(settings.data_dir) is not None:
        return settings.model_copy(update={"allow_private_webhooks": True})
    return settings


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    url = await asyncio.to_thread(database_url, settings)
    db = Database.connect(url, pool_size=settings.db_pool_size)
    try:
        yield db
    finally:
        await db.dispose()


@contextmanager
def embedded_database_stopped_on_exit(settings: Settings) -> Iterator[None]:
    """Stop the embedded PostgreSQL when this command ends, including on SIGTERM.

    uvicorn re-raises the signal it caught after shutting down; turning SIGTERM into SystemExit
    lets this block (and atexit) run instead of the process dying with the server still up.
    """
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not settings.database_url:
            stop_embedded(settings.data_dir)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()

    return asyncio.run(wrapper())
