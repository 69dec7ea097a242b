"""What the worker runs: handler outcomes, the context handlers get, and the registry.

Services implement handlers against these types; ``app/worker.py`` runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

import httpx

from app.clock import Clock
from app.config import Settings
from app.crypto import Crypto
from app.db import Database
from app.models import OutboxMessage


@dataclass(frozen=True)
class Sent:
    detail: str | None = None


@dataclass(frozen=True)
class Retry:
    error: str
    delay: timedelta | None = None  # None: the default backoff for this attempt


@dataclass(frozen=True)
class Dead:
    error: str


Outcome = Sent | Retry | Dead


@dataclass
class WorkerContext:
    """What handlers may use; built once per worker process (or per test)."""

    settings: Settings
    db: Database
    crypto: Crypto
    clock: Clock
    http: httpx.AsyncClient
    extras: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[OutboxMessage, Any, WorkerContext], Awaitable[Outcome]]
DeadHook = Callable[[OutboxMessage, str, WorkerContext], Awaitable[None]]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    every: timedelta
    run: Callable[[WorkerContext], Awaitable[int]]


@dataclass
class Registry:
    handlers: dict[str, Handler] = field(default_factory=dict)
    on_dead: dict[str, DeadHook] = field(default_factory=dict)
    periodic: list[PeriodicJob] = field(default_factory=list)

    def handler_for(self, message: OutboxMessage) -> Handler | None:
        return self.handlers.get(f"{message.kind}:{message.topic}") or self.handlers.get(
            message.kind
        )


T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Write items that arrive together in one transaction (group commit).

    ``submit`` returns once the item's write has committed (or raises what the write raised),
    so a caller never reports done before its record is durable; concurrent callers share
    one round of BEGIN/COMMIT instead of paying one each.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let the callers finishing now join this group
            batch, self._pending = self._pending, []
            try:
                await self._write([item for item, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if future.done():
                        continue
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:
                        future.cancel()
                if not isinstance(exc, Exception):
                    raise
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
