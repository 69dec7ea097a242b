"""`dsr demo` and `dsr serve --demo`'s loader, against a database of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from app.cli.demo import ensure_demo
from app.config import Settings, ensure_keys
from app.datamap.connectors.postgres import connect
from app.datamap.loader import load_datamap
from app.demo.load import DEMO_SUBJECT
from app.demo.processors import CARRIERS, PROCESSORS
from app.migrate import upgrade
from tests.support.database import fresh_database


@pytest.fixture
async def scratch_url(admin_database_url: str) -> AsyncIterator[str]:
    """An empty database: the demo schema made here cannot disturb other tests."""
    async with fresh_database(admin_database_url, migrate=False) as url:
        yield url


def run_dsr(*args: str, url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    env |= {"DSR_DATABASE_URL": url, "DSR_DATA_DIR": str(data_dir), "DSR_ENV": "dev"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_dsr_demo_creates_the_documented_subject(scratch_url: str, tmp_path: Path) -> None:
    first = run_dsr(
        "demo", "--subjects", "50", "--records-per-subject", "2", url=scratch_url, data_dir=tmp_path
    )
    assert first.returncode == 0, first.stderr
    assert "demo schema loaded" in first.stdout and DEMO_SUBJECT.phone in first.stdout
    conn = await connect(scratch_url)
    try:
        sent = await conn.fetch(
            "SELECT carrier_code FROM demo.deliveries WHERE sender_phone = $1", DEMO_SUBJECT.phone
        )
        received = await conn.fetch(
            "SELECT carrier_code FROM demo.deliveries WHERE recipient_phone = '01055550001'"
        )
        carriers = {row[0] for row in sent} | {row[0] for row in received}
        assert len(sent) >= 1 and len(received) >= 1 and len(carriers) >= 3
        for table, column, value in [
            ("intl_reservations", "contact", DEMO_SUBJECT.phone_e164),
            ("email_counseling", "lower(email)", DEMO_SUBJECT.email),
            ("app_installs", "phone", DEMO_SUBJECT.phone_e164),
            ("marketing_contacts", "email", DEMO_SUBJECT.email),
            ("access_logs", "account_email", DEMO_SUBJECT.email),
        ]:
            count = await conn.fetchval(
                f"SELECT count(*) FROM demo.{table} WHERE {column} = $1", value
            )
            assert count == 1, table
        code = await conn.fetchval(
            "SELECT customs_code FROM demo.intl_reservations WHERE contact = $1",
            DEMO_SUBJECT.phone_e164,
        )
        assert code[0] == "P" and len(code) == 13 and code[1:].isdigit()
        total = await conn.fetchval("SELECT count(*) FROM demo.deliveries")
        assert total == 50 * 2 + 8
        assert await conn.fetchval("SELECT count(*) FROM demo.carriers") == len(PROCESSORS)
    finally:
        await conn.close()
    datamap = load_datamap(tmp_path / "datamap.yaml")
    assert {p.code for p in datamap.processors} == {p.code for p in PROCESSORS}
    again = run_dsr("demo", url=scratch_url, data_dir=tmp_path)
    assert again.returncode == 0 and "already present" in again.stdout
    reset = run_dsr("demo", "--reset", "--subjects", "5", url=scratch_url, data_dir=tmp_path)
    assert reset.returncode == 0 and "demo schema loaded" in reset.stdout
    conn = await connect(scratch_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM demo.deliveries") == 5 * 5 + 8
    finally:
        await conn.close()


def test_serve_demo_loader_is_idempotent(scratch_url: str, tmp_path: Path) -> None:
    settings = ensure_keys(Settings(env="dev", database_url=scratch_url, data_dir=tmp_path))
    upgrade(scratch_url)  # `dsr serve` migrates before loading the demo
    first = ensure_demo(settings, scratch_url, subjects=10, records=1, show_progress=False)
    second = ensure_demo(settings, scratch_url, subjects=10, records=1, show_progress=False)
    assert first.created and first.rows > 0 and not second.created
    data = yaml.safe_load((tmp_path / "datamap.yaml").read_text())
    assert data["sources"]["demo"]["dsn"] == "self"


def test_demo_processors_cover_policy_section_3() -> None:
    codes = {p.code for p in PROCESSORS}
    assert {"hct", "yamato", "ninjavan", "dhlec-my", "dhlec-us", "sf-express", "hanjin"} <= codes
    assert {"yuhan-technos", "kochina", "lguplus"} <= codes
    assert len(codes) == len(PROCESSORS) == 49
    assert all(p.service == "carrier" for p in CARRIERS)
