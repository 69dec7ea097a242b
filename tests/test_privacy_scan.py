"""The privacy scan itself (tests/support/pii_scan.py) catches what it is there to catch."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tests.support import pii_scan
from tests.support.lifecycle import staff


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhooks": True}


async def test_a_phone_number_in_clear_in_a_table_is_found(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = {
        "code": "leaky",
        "name": "홍길동 010-1234-5678",
        "nation": "KR",
        "webhook_url": "http://127.0.0.1:9/x",
    }
    response = await client.post("/v1/processors", json=body, headers=staff(app, "admin"))
    assert response.status_code == 201, response.text
    before = len(pii_scan.FINDINGS.tables)
    try:
        async with app.state.db.transaction() as session:
            await pii_scan.scan_tables(session)
        found = pii_scan.FINDINGS.tables[before:]
        assert any("processor.name" in finding for finding in found), found
        assert all("1234-5678" not in finding for finding in found)  # the report masks it
    finally:
        del pii_scan.FINDINGS.tables[before:]
        async with app.state.db.transaction() as session:
            await session.execute(sa.text("DELETE FROM processor WHERE code = 'leaky'"))


def test_an_e_mail_address_or_a_token_in_a_log_line_is_found() -> None:
    before = len(pii_scan.FINDINGS.logs)
    logger = logging.getLogger("dsr.test")
    try:
        logger.warning("sent to %s", "kim@example.com")
        logger.info("ok", extra={"event": "x", "count": 123456})  # counts are not codes
        logger.info("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhYmNkZWYifQ.c2lnbmF0dXJlLXZhbHVl")
        assert len(pii_scan.FINDINGS.logs) - before == 2, pii_scan.FINDINGS.logs[before:]
    finally:
        del pii_scan.FINDINGS.logs[before:]


def test_a_code_a_gateway_received_is_found_in_a_log_line() -> None:
    before = len(pii_scan.FINDINGS.logs)
    pii_scan.saw_code("482913")
    try:
        logging.getLogger("dsr.test").info("the code is 482913")
        assert len(pii_scan.FINDINGS.logs) == before + 1
    finally:
        del pii_scan.FINDINGS.logs[before:]
        pii_scan.FINDINGS.codes.discard("482913")


def test_a_digest_that_holds_a_phone_shaped_run_is_not_personal_data() -> None:
    # A blind index is an HMAC in hex; one in CI held "0181234567" and failed the run.
    digest = "9f3c" + "01812345678" + "a" * 49
    before = len(pii_scan.FINDINGS.logs)
    logger = logging.getLogger("dsr.test")
    try:
        logger.info("blind index %s", digest)
        assert len(pii_scan.FINDINGS.logs) == before, pii_scan.FINDINGS.logs[before:]
        logger.info("phone %s beside %s", "010-1234-5678", digest)  # a phone is still found
        assert len(pii_scan.FINDINGS.logs) == before + 1
    finally:
        del pii_scan.FINDINGS.logs[before:]


def test_a_subprocess_line_with_a_phone_number_is_found() -> None:
    before = len(pii_scan.FINDINGS.logs)
    output = "\n".join(
        [
            '{"ts": "2026-11-26T01:00:00+00:00", "msg": "sent", "duration_ms": 1012345678}',
            "plain text from a library: sent to 010-1234-5678",
            "",
        ]
    )
    try:
        assert pii_scan.scan_output(output, "dsr worker") == 2
        found = pii_scan.FINDINGS.logs[before:]
        assert len(found) == 1 and "dsr worker" in found[0], found  # the JSON line is clean
        assert "1234-5678" not in found[0]
    finally:
        del pii_scan.FINDINGS.logs[before:]
