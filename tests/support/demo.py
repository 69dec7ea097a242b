"""The demo dataset as a data source for flow tests: a fresh schema and the settings to read it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.datamap.connectors.postgres import connect
from app.demo.load import demo_datamap_text, drop_demo, load_demo
from tests.conftest import FROZEN_AT
from tests.support.servers import RecordingServer


@asynccontextmanager
async def fresh_demo(database_url: str, *, subjects: int) -> AsyncIterator[str]:
    """The demo schema loaded afresh (two records per subject), dropped afterwards."""
    conn = await connect(database_url)
    try:
        await load_demo(conn, subjects=subjects, records_per_subject=2, now=FROZEN_AT, reset=True)
        yield database_url
    finally:
        await drop_demo(conn)
        await conn.close()


def demo_settings(tmp_path: Path, gateway: RecordingServer, **more: Any) -> dict[str, Any]:
    """Settings overrides: the demo data map, the gateways on 127.0.0.1, and ``more``."""
    datamap = tmp_path / "datamap.yaml"
    datamap.write_text(demo_datamap_text(), encoding="utf-8")
    return {
        "datamap_path": datamap,
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        **more,
    }
