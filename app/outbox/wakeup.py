"""Wake idle workers when a message is queued: LISTEN on the channel the outbox notifies.

A trigger on ``outbox_message`` (migration 0012) calls ``pg_notify('dsr_outbox', '')`` in the
transaction that inserts pending rows, so the notice arrives when that transaction commits,
never before (and not at all if it rolls back). Every idle worker listens on its own
connection and claims at once; ``FOR UPDATE SKIP LOCKED`` shares the work out. Polling stays
the fallback: a worker waits at most the poll interval, listening or not, and a dropped
listening connection only costs polling until the next wait reconnects it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

CHANNEL = "dsr_outbox"
APPLICATION_NAME = "dsr-worker-listen"  # how operators (and tests) find these connections
logger = logging.getLogger("dsr.worker")


class Wakeup:
    """One LISTEN connection per worker and the signal it sets."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._signal = asyncio.Event()
        self._connection: asyncpg.Connection | None = None

    def _notified(self, *_: Any) -> None:
        self._signal.set()

    def _lost(self, *_: Any) -> None:
        # Wake the worker: it catches up by claiming, and the next wait listens again.
        self._connection = None
        self._signal.set()

    async def _listen(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            return
        try:
            connection = await asyncpg.connect(
                self._url, timeout=5, server_settings={"application_name": APPLICATION_NAME}
            )
            connection.add_termination_listener(self._lost)
            await connection.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            logger.warning("listen failed: polling", extra={"event": "worker.listen_failed"})
            return
        self._connection = connection

    def clear(self) -> None:
        """Forget earlier notices: call before claiming, so one that arrives meanwhile counts."""
        self._signal.clear()

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Return on a notice, on ``stop``, or after ``seconds``, whichever is first."""
        await self._listen()
        waiters = [asyncio.ensure_future(self._signal.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
