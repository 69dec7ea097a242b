"""Connectors to the sources a data map names, opened per unit of work.

async with open_connectors(datamap, self_url=..., http=..., crypto=...) as connectors:
    connector = connectors.for_collection(spec)
    async for record in connector.export(spec, subject=identifiers): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from app.crypto import Crypto
from app.datamap.connectors.base import (
    ApplyResult,
    Connector,
    Erasure,
    FieldUpdate,
    Handover,
    RecordRef,
    SourceError,
    SourceRejected,
    SourceUnavailable,
    SubjectRecord,
)
from app.datamap.connectors.http import HttpConnector
from app.datamap.connectors.postgres import PostgresConnector
from app.datamap.schema import SELF_DSN, CollectionSpec, DataMap, HttpSource

__all__ = [
    "ApplyResult",
    "Connector",
    "Connectors",
    "Erasure",
    "FieldUpdate",
    "Handover",
    "HttpConnector",
    "PostgresConnector",
    "RecordRef",
    "SourceError",
    "SourceRejected",
    "SourceUnavailable",
    "SubjectRecord",
    "open_connectors",
]


class Connectors:
    """One connector per source, created on first use; ``close()`` releases them all."""

    def __init__(
        self, datamap: DataMap, *, self_url: str, http: httpx.AsyncClient, crypto: Crypto
    ) -> None:
        self.datamap = datamap
        self._self_url = self_url
        self._http = http
        self._crypto = crypto
        self._open: dict[str, Connector] = {}

    def for_source(self, name: str) -> Connector:
        if name not in self._open:
            source = self.datamap.sources[name]
            collections = self.datamap.collections_of(name)
            connector: Connector
            if isinstance(source, HttpSource):
                connector = HttpConnector(name, source, http=self._http, collections=collections)
            else:
                dsn = source.resolve_dsn()
                connector = PostgresConnector(
                    name,
                    self._self_url if dsn == SELF_DSN else dsn,
                    schema=source.schema_name,
                    collections=collections,
                    hasher=self.hash_value,
                )
            self._open[name] = connector
        return self._open[name]

    def for_collection(self, spec: CollectionSpec) -> Connector:
        return self.for_source(spec.source)

    def hash_value(self, value: str) -> str:
        """The keyed hash the ``hash`` erasure strategy writes (not reversible by guessing)."""
        return self._crypto.mac("datamap-erasure", value)

    async def close(self) -> None:
        opened, self._open = list(self._open.values()), {}
        for connector in opened:
            await connector.close()


@asynccontextmanager
async def open_connectors(
    datamap: DataMap, *, self_url: str, http: httpx.AsyncClient, crypto: Crypto
) -> AsyncIterator[Connectors]:
    connectors = Connectors(datamap, self_url=self_url, http=http, crypto=crypto)
    try:
        yield connectors
    finally:
        await connectors.close()
