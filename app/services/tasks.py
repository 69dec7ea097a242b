"""What the worker runs: handler outcomes, the context handlers get, and the registry.

Services implement handlers against these types; ``app/worker.py`` runs them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from app.clock import Clock
from app.config import Settings
from app.db import Database
from app.models import OutboxMessage
from app.services.crypto import Crypto


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
