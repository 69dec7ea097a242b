"""The suite-wide privacy scan: no test subject's data in any log line or in clear in any table.

A pytest plugin (registered in ``tests/conftest.py``):

- every log record of the run, formatted as production formats it (``JsonFormatter``), and
  what the subprocesses a test starts wrote (``scan_output``), is scanned for phone numbers,
  e-mail addresses, the test subjects' names and addresses, bearer tokens, webhook secrets and
  every one-time code the loopback gateways received;
- before each test's tables are truncated, every text, jsonb and bytea column of the app's own
  tables is scanned for the same identifiers (codes excepted: stored only as hashes, and six
  digits would match ids). The data map's source tables (the company's systems) are not ours.

Findings fail the run at the end, listed with the test that produced them.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import metadata
from app.observability import JsonFormatter

# The test subjects: what tests/support and the test modules use as identifiers and values.
NAMES = ("김하늘", "홍길동", "김하람", "박민준", "김민지", "이서연", "박다른", "공항대로 247")
PHONE = r"(?<![\d-])(?:\+82[- ]?|0)1[016789][- ]?\d{3,4}[- ]?\d{4}(?!\d)"
EMAIL = r"[\w.+-]+@(?:[\w-]+\.)*example\.(?:com|co\.kr)"
TOKEN = r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}"
WEBHOOK_SECRET = r"whsec_[A-Za-z0-9+/]{20,}"
PATTERN = "|".join([PHONE, EMAIL, TOKEN, WEBHOOK_SECRET, *map(re.escape, NAMES)])
# Log fields that are ids, times and counts: digits there are not codes.
NUMERIC_FIELDS = ("ts", "request_id", "message_id", "duration_ms", "delay_s", "count", "status")
# Loggers `configure_logging` keeps at WARNING (httpx logs full URLs at INFO).
QUIET_IN_PRODUCTION = ("httpx", "httpcore", "sqlalchemy.engine", "uvicorn.access")
TEXT_TYPES = ("text", "character varying", "jsonb", "json", "bytea")
# Ids and digests are not personal data, but random hex sometimes reads like a phone number: a
# purge's list of UUIDs held "…a010-1234-5678…", a blind index (an HMAC-SHA256 in hex) held
# "…0181234567…". Both are blanked before matching; a digest is 32 or more hex digits in a row.
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
HEX_DIGEST = r"[0-9a-fA-F]{32,}"
NOT_PERSONAL = f"{UUID}|{HEX_DIGEST}"
_not_personal = re.compile(NOT_PERSONAL)


@dataclass
class Findings:
    codes: set[str] = field(default_factory=set)
    logs: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    current: str = "(collection)"
    lines: int = 0
    scans: int = 0
    detached: bool = False


FINDINGS = Findings()
_pattern = re.compile(PATTERN)


def saw_code(code: str) -> None:
    """A one-time code left the service (a gateway received it): it must appear nowhere."""
    if re.fullmatch(r"\d{6}", code):
        FINDINGS.codes.add(code)


class ScanningHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter_ = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(QUIET_IN_PRODUCTION) and record.levelno < logging.WARNING:
            return  # never written in production; in tests, the test client's own URLs
        try:
            line = self.formatter_.format(record)
        except Exception:  # a record that cannot be formatted is not ours to judge
            return
        _scan_line(line, record.name)


def _scan_line(line: str, source: str) -> None:
    FINDINGS.lines += 1
    try:
        fields: Any = json.loads(line)
    except ValueError:
        fields = None
    if isinstance(fields, dict):
        for name in NUMERIC_FIELDS:
            fields.pop(name, None)
        line = json.dumps(fields, ensure_ascii=False)
    text = _not_personal.sub(" ", line)
    found = _pattern.search(text)
    code = next((c for c in FINDINGS.codes if re.search(rf"(?<!\d){c}(?!\d)", text)), None)
    if found or code:
        what = found.group(0) if found else f"one-time code {code}"
        FINDINGS.logs.append(f"{FINDINGS.current}: {source}: {_masked(what)}")


def scan_output(text: str, source: str) -> int:
    """Scan what a subprocess (a `dsr worker`, `dsr serve`) wrote, line by line, as the
    in-process log records are scanned; the number of lines read."""
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        _scan_line(line, source)
    return len(lines)


def _masked(value: str) -> str:
    # The report must not become the leak it reports.
    return value[:3] + "…" + f"({len(value)} chars)"


async def scan_tables(session: AsyncSession) -> None:
    """Every text/jsonb/bytea column of the app's tables, one statement."""
    names = [table.name for table in metadata.sorted_tables]
    columns = (
        await session.execute(
            sa.text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ANY(:names) "
                "AND data_type = ANY(:types)"
            ),
            {"names": names, "types": list(TEXT_TYPES)},
        )
    ).all()
    if not columns:
        return
    selects = []
    for table, column, kind in columns:
        raw = f"encode(\"{column}\", 'escape')" if kind == "bytea" else f'"{column}"::text'
        value = f"regexp_replace({raw}, :not_personal, ' ', 'g')"
        selects.append(
            f"(SELECT '{table}.{column}' AS place, substring({value} from :pattern) AS hit "
            f'FROM "{table}" WHERE {value} ~ :pattern LIMIT 1)'
        )
    rows = (
        await session.execute(
            sa.text(" UNION ALL ".join(selects)), {"pattern": PATTERN, "not_personal": NOT_PERSONAL}
        )
    ).all()
    FINDINGS.scans += 1
    for place, hit in rows:
        FINDINGS.tables.append(f"{FINDINGS.current}: {place}: {_masked(str(hit))}")


_handler = ScanningHandler()


def pytest_sessionstart(session: pytest.Session) -> None:
    logging.getLogger().addHandler(_handler)
    # Our loggers at DEBUG: every line the service could ever write is scanned.
    logging.getLogger("dsr").setLevel(logging.DEBUG)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    FINDINGS.current = item.nodeid
    return (yield)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    root = logging.getLogger()
    # Something that replaces the root handlers (``configure_logging`` does) would have switched
    # the log scan off unseen for the rest of the run.
    FINDINGS.detached = _handler not in root.handlers
    root.removeHandler(_handler)
    if FINDINGS.logs or FINDINGS.tables or FINDINGS.detached:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report = terminalreporter
    report.write_sep("-", "privacy scan")
    report.write_line(
        f"{FINDINGS.lines} log lines scanned, {FINDINGS.scans} database scans, "
        f"{len(FINDINGS.codes)} one-time codes watched"
    )
    if FINDINGS.detached:
        report.write_line("the log scan was detached from the root logger during the run", red=True)
    for kind, found in (("log", FINDINGS.logs), ("table", FINDINGS.tables)):
        for finding in found[:50]:
            report.write_line(f"personal data in a {kind}: {finding}", red=True)
        if len(found) > 50:
            report.write_line(f"... and {len(found) - 50} more", red=True)
