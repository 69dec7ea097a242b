"""What the worker runs: handler outcomes, the context handlers get, and the registry.

Services implement handlers against these types; ``app/outbox/worker.py`` runs them and
``app/worker.py`` (the composition root) registers every domain's handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from app.clock import Clock
from app.config import Settings
from app.crypto import Crypto
from app.db import Database
from app.models import OutboxMessage
from app.outbox.retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:  # the domains import this module; their types are only annotations here
    from app.datamap.schema import DataMap
    from app.fulfilment.access import AccessReportReady
    from app.webhooks.delivery import WebhookWorkerState


@dataclass(frozen=True)
class Sent:
    detail: str | None = None
    # What the handler's domain keeps of this success (a webhook's attempt row): written by the
    # registry's recorder for the message's kind in the transaction that marks it delivered.
    record: Any = None


@dataclass(frozen=True)
class Retry:
    error: str
    delay: timedelta | None = None  # None: the handler's RetryPolicy for this attempt


@dataclass(frozen=True)
class Held:
    """Kept, not sent, until an operator releases it (a webhook for a disabled processor)."""

    reason: str
    attempted: bool = False  # False: this claim does not count as an attempt


@dataclass(frozen=True)
class Dead:
    error: str


Outcome = Sent | Retry | Held | Dead


@dataclass
class WorkerContext:
    """What handlers may use; built once per worker process (or per test)."""

    settings: Settings
    db: Database
    crypto: Crypto
    clock: Clock
    http: httpx.AsyncClient
    # The data map fulfilment jobs act on; loaded from settings on first use when None.
    datamap: DataMap | None = None
    # Called in the transaction that stores an access report (completes the request).
    access_report_ready: AccessReportReady | None = None
    # Per worker process: webhook concurrency limits and caches; made on first use when None.
    webhooks: WebhookWorkerState | None = None


Handler = Callable[[OutboxMessage, Any, WorkerContext], Awaitable[Outcome]]
DeadHook = Callable[[OutboxMessage, str, WorkerContext], Awaitable[None]]
# Writes the ``Sent.record``s of outcomes finishing together, in the worker's transaction.
Recorder = Callable[[AsyncSession, list[Any]], Awaitable[None]]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    every: timedelta
    run: Callable[[WorkerContext], Awaitable[int]]


@dataclass
class Registry:
    """Handlers, retry policies and payload retention per ``kind`` or ``kind:topic``."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    on_dead: dict[str, DeadHook] = field(default_factory=dict)
    periodic: list[PeriodicJob] = field(default_factory=list)
    retry: dict[str, RetryPolicy] = field(default_factory=dict)
    # How long a finished message keeps its payload, where not the configured default;
    # timedelta(0): destroyed in the transaction that finishes it (one-time codes).
    keep_payload: dict[str, timedelta] = field(default_factory=dict)
    # What writes the records successes of a kind carry (``Sent.record``), with their outcome.
    recorders: dict[str, Recorder] = field(default_factory=dict)

    def handler_for(self, message: OutboxMessage) -> Handler | None:
        return _lookup(self.handlers, message)

    def policy_for(self, message: OutboxMessage) -> RetryPolicy:
        return _lookup(self.retry, message) or DEFAULT_RETRY

    def recorder_for(self, message: OutboxMessage) -> Recorder:
        """The recorder of this message's ``Sent.record`` (a handler returning one has one)."""
        recorder = _lookup(self.recorders, message)
        if recorder is None:
            raise LookupError(f"no recorder for {message.kind}:{message.topic}")
        return recorder

    def keeps_payload_for(self, message: OutboxMessage) -> timedelta | None:
        """This message's own payload retention, or None for the configured default."""
        return _lookup(self.keep_payload, message)


V = TypeVar("V")


def _lookup(table: dict[str, V], message: OutboxMessage) -> V | None:
    specific = table.get(f"{message.kind}:{message.topic}")  # not `or`: timedelta(0) is falsy
    return specific if specific is not None else table.get(message.kind)


T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Write items that arrive together in one transaction (group commit).

    ``submit`` returns once the item's write has committed (or raises what the write raised),
    so a caller never reports done before its record is durable; concurrent callers share
    one round of BEGIN/COMMIT instead of paying one each. ``linger`` (seconds) holds a group
    open that long for callers finishing a moment later (larger groups, fewer transactions);
    an item submitted with ``last=True`` (no one else is about to finish) closes it at once.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, linger: float = 0) -> None:
        self._write = write
        self.linger = linger
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._last = False  # the caller closing this round has submitted
        self._wake: asyncio.Future[None] | None = None

    async def submit(self, item: T, *, last: bool = False) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if last:
            self._last = True
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            if self.linger > 0 and not self._last:  # until the round's last caller or the linger
                self._wake = asyncio.get_running_loop().create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake, self.linger)
                self._wake = None
            else:
                await asyncio.sleep(0)  # let the callers finishing now join this group
            self._last = False
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
