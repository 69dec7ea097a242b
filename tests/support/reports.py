"""An access report generated straight from a data map, as the fulfilment job generates it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

from app.config import Settings
from app.crypto import Crypto
from app.datamap.connectors import open_connectors
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.schema import DataMap
from app.fulfilment.reports.builder import generate_access_report
from app.schemas.reports import AccessReport
from tests.conftest import FROZEN_AT


async def make_report(
    database_url: str,
    settings: Settings,
    datamap: DataMap,
    subject: SubjectIdentifiers,
    *,
    now: datetime = FROZEN_AT,
    **kwargs: Any,
) -> AccessReport:
    """The report of ``subject`` over ``datamap``'s sources (its own database: ``database_url``)."""
    async with (
        httpx.AsyncClient() as http,
        open_connectors(
            datamap, self_url=database_url, http=http, crypto=Crypto.from_settings(settings)
        ) as connectors,
    ):
        return await generate_access_report(
            connectors, request_id=uuid.uuid4(), subject=subject, now=now, **kwargs
        )
