"""The service foundation: schema, errors as problem+json, request ids, logs, health, config."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import BaseModel

from app.clock import FrozenClock
from app.config import ConfigError, Settings, ensure_keys
from app.main import create_app
from app.migrate import head_revision
from app.models import OutboxMessage
from app.observability import JsonFormatter
from app.outbox import queue
from tests.support.database import fresh_database
from tests.support.servers import closed_port, served

PHONE = "010-9876-5432"


class Parcel(BaseModel):
    name: str
    weight: int


def add_probe_routes(app: FastAPI) -> None:
    """Routes that exercise the error pipeline and the unit of work."""

    @app.post("/probe/parcels", status_code=201)
    async def create_parcel(body: Parcel) -> dict[str, Any]:
        async with app.state.db.transaction() as session:
            await queue.enqueue(
                session,
                crypto=app.state.crypto,
                now=app.state.clock.now(),
                kind="probe",
                topic="parcel",
                payload=body.model_dump(),
            )
        return {"ok": True}

    @app.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError(f"lookup failed for {PHONE}")


async def outbox_count(app: FastAPI) -> int:
    async with app.state.db.transaction() as session:
        return int(
            (
                await session.execute(sa.select(sa.func.count()).select_from(OutboxMessage))
            ).scalar_one()
        )


async def test_migrations_bring_an_empty_database_to_head(admin_database_url: str) -> None:
    async with fresh_database(admin_database_url) as url:
        engine = sa.ext.asyncio.create_async_engine(url)
        async with engine.connect() as connection:
            version = (
                await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            ).scalar_one()
            tables = set(
                (
                    await connection.execute(
                        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    )
                ).scalars()
            )
        await engine.dispose()
    assert version == head_revision()
    assert {"outbox_message", "subject_identifier"} <= tables


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_readyz_is_503_problem_when_the_database_is_unreachable(
    settings: Settings, clock: FrozenClock
) -> None:
    port = closed_port()
    unreachable = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{port}/nothing"}
    )
    app = create_app(unreachable, clock=clock, start_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/readyz")
            assert (await http.get("/healthz")).status_code == 200
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "unavailable"
    assert str(port) not in response.text


async def test_readyz_is_503_when_the_schema_is_behind(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.state.schema_head = "a-revision-not-yet-applied"
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert "revision" in response.json()["detail"]


async def test_unknown_route_and_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not-found"
    assert missing.json()["instance"] == "/v1/nothing-here"

    wrong = await client.delete("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method-not-allowed"
    assert wrong.json()["type"] == "urn:qx-dsr:problem:method-not-allowed"


async def test_malformed_json_and_wrong_types_are_422_and_change_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probe_routes(app)
    malformed = await client.post(
        "/probe/parcels", content=b'{"name": "x", ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422
    assert malformed.headers["content-type"] == "application/problem+json"
    assert malformed.json()["code"] == "validation-failed"

    wrong = await client.post("/probe/parcels", json={"name": PHONE, "weight": "heavy"})
    assert wrong.status_code == 422
    errors = wrong.json()["errors"]
    assert [error["pointer"] for error in errors] == ["/weight"]
    assert PHONE not in wrong.text  # the input is never echoed
    assert await outbox_count(app) == 0

    ok = await client.post("/probe/parcels", json={"name": "box", "weight": 3})
    assert ok.status_code == 201
    assert await outbox_count(app) == 1


async def test_oversized_body_is_413(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    add_probe_routes(app)
    big = {"name": "x" * (settings.max_body_bytes + 10), "weight": 1}
    response = await client.post("/probe/parcels", json=big)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payload-too-large"
    assert await outbox_count(app) == 0


async def test_streamed_oversized_body_without_length_is_413(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    add_probe_routes(app)

    async def chunks() -> Any:
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    response = await client.post(
        "/probe/parcels", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_unhandled_error_is_500_without_internals(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    add_probe_routes(app)
    caplog.set_level(logging.INFO)
    response = await client.get("/probe/crash")
    assert response.status_code == 500
    assert response.json()["code"] == "internal-error"
    assert PHONE not in response.text
    assert "RuntimeError" not in response.text
    formatted = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert PHONE not in formatted
    assert "RuntimeError" in formatted  # the operator still sees what kind of failure it was


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    hostile = await client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert hostile.headers["x-request-id"] != "bad id <script>"
    problem = await client.get("/nope", headers={"X-Request-ID": "trace-9"})
    assert problem.json()["request_id"] == "trace-9"


async def test_logs_never_contain_request_bodies(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    add_probe_routes(app)
    caplog.set_level(logging.DEBUG)
    await client.post(
        "/probe/parcels?phone=01098765432",
        json={"name": PHONE, "weight": 2},
        headers={"X-Request-ID": "log-check"},
    )
    await client.post("/probe/parcels", json={"name": PHONE, "weight": "x"})
    # The test client's own httpx log lines are not the service's.
    lines = [JsonFormatter().format(r) for r in caplog.records if not r.name.startswith("httpx")]
    assert any('"route": "/probe/parcels"' in line for line in lines)
    request_lines = [json.loads(line) for line in lines if "log-check" in line]
    assert request_lines and request_lines[0]["status"] == 201
    joined = "\n".join(lines)
    assert PHONE not in joined
    assert "01098765432" not in joined


async def test_metrics_count_requests_by_route(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/v1/unknown/123")
    text = (await client.get("/metrics")).text
    assert 'dsr_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "dsr_http_request_duration_seconds_bucket" in text
    assert "/v1/unknown/123" not in text


def test_prod_without_keys_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DSR_TOKEN_SIGNING_KEY"):
        ensure_keys(Settings(env="prod", data_dir=tmp_path, database_url="postgresql://x/y"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("DSR_")} | {
        "DSR_ENV": "prod",
        "DSR_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "DSR_TOKEN_SIGNING_KEY" in result.stderr
    assert "DSR_FIELD_ENCRYPTION_KEY" in result.stderr
    assert not (tmp_path / "keys.json").exists()


def test_dev_keys_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = ensure_keys(Settings(env="dev", data_dir=tmp_path))
    second = ensure_keys(Settings(env="dev", data_dir=tmp_path))
    assert first.token_signing_key == second.token_signing_key
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


EMBEDDED_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import asyncpg
    from app.db import plain_url, start_embedded, stop_embedded

    data_dir = Path(sys.argv[1])
    url = plain_url(start_embedded(data_dir))

    async def main():
        from sqlalchemy.engine import make_url
        u = make_url(url)
        conn = await asyncpg.connect(user="postgres", host=u.query["host"], database="postgres")
        await conn.execute("CREATE TABLE IF NOT EXISTS kept (v text)")
        if sys.argv[2] == "write":
            await conn.execute("INSERT INTO kept VALUES ('survives restarts')")
        print(await conn.fetchval("SELECT string_agg(v, ',') FROM kept"))
        await conn.close()

    asyncio.run(main())
    stop_embedded(data_dir)
    """
)


def test_embedded_server_keeps_data_across_two_starts(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DSR_")}
    runs = []
    for mode in ("write", "read"):
        result = subprocess.run(
            [sys.executable, "-c", EMBEDDED_SCRIPT, str(tmp_path), mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        runs.append(result.stdout.strip())
    assert runs == ["survives restarts", "survives restarts"]
    postmaster = tmp_path / "pgdata" / "postmaster.pid"
    assert not postmaster.exists(), "the embedded server is stopped when its process exits"


def test_openapi_check_detects_drift(tmp_path: Path) -> None:
    target = tmp_path / "openapi.yaml"
    target.write_text("openapi: 3.1.0\n")
    cmd = [sys.executable, "-m", "app.cli", "openapi", "--check", "--output", str(target)]
    drift = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert drift.returncode == 1
    subprocess.run(
        [*cmd[:-3], "--output", str(target)], check=True, timeout=60, capture_output=True
    )
    clean = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert clean.returncode == 0, clean.stderr


def test_dsr_serve_on_the_embedded_database_and_sigterm_stops_it(tmp_path: Path) -> None:
    """README command 1: serve on an embedded PostgreSQL; stopping it stops the database."""
    import signal

    port = closed_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DSR_")} | {
        "DSR_DATA_DIR": str(tmp_path / "data")
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert served(process, port)
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert (tmp_path / "data" / "keys.json").exists()
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()


def _spawned_children(pid: int) -> list[int]:
    """Processes started by ``pid`` through multiprocessing (uvicorn's worker processes)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:  # not the resource tracker
            children.append(int(entry.name))
    return children


def test_dsr_serve_with_two_workers_serves_from_two_processes_and_stops_them(
    tmp_path: Path,
) -> None:
    """`dsr serve --workers 2`: two API processes on one port, one embedded server, all stopped."""
    import signal
    import time

    port = closed_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DSR_")} | {
        "DSR_DATA_DIR": str(tmp_path / "data")
    }
    serve = [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--workers", "2"]
    process = subprocess.Popen(
        [*serve, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert served(process, port)
        deadline = time.monotonic() + 30
        while len(workers := _spawned_children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert len(workers) == 2, "two API processes"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            answers = [client.get("/readyz").status_code for _ in range(50)]
        assert answers == [200] * 50  # both processes reach the one database, migrated once
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()
