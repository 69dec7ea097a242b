"""`dsr serve` and `dsr worker`."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Coroutine
from typing import Any

import typer
import uvicorn
from fastapi import FastAPI

from app.cli.common import (
    embedded_database_stopped_on_exit,
    load_settings,
    open_database,
    with_demo_webhooks,
)
from app.cli.demo import ensure_demo
from app.clock import SystemClock
from app.config import KEY_FIELDS, ConfigError, Settings
from app.crypto import Crypto
from app.datamap.loader import load_configured_datamap
from app.db import database_url
from app.demo.load import DEMO_SUBJECT
from app.demo.state import load_state, remember_service
from app.main import create_app, http_client
from app.migrate import upgrade
from app.outbox.worker import Worker
from app.worker import build_context, build_registry


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8000, help="Port to listen on"),
    no_worker: bool = typer.Option(False, "--no-worker", help="Serve the API only"),
    with_demo: bool = typer.Option(
        False, "--demo", help="Load the demo dataset and its data map first, if absent"
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="API processes on this machine (each with its own worker loop unless --no-worker)",
    ),
) -> None:
    """Migrate the database, then serve the API (with the worker loop unless --no-worker)."""
    settings = load_settings()
    if no_worker:
        settings = settings.model_copy(update={"run_worker": False})
    # The demo's processors are the stand-in partner on 127.0.0.1 (`dsr demo-partner`); a data
    # dir that holds the demo keeps allowing them after a restart without --demo.
    remembered = not with_demo and load_state(settings.data_dir) is not None
    settings = with_demo_webhooks(settings, demo=with_demo)
    with embedded_database_stopped_on_exit(settings):
        url = database_url(settings)
        upgrade(url)
        if with_demo:
            ensure_demo(settings, url)
            typer.echo(f"demo subject: phone {DEMO_SUBJECT.phone}, e-mail {DEMO_SUBJECT.email}")
        try:
            app = create_app(settings)
        except ConfigError as exc:
            typer.secho(f"configuration error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
        if remembered and settings.allow_private_webhooks:
            typer.echo(
                f"{settings.data_dir} holds the demo: webhooks to 127.0.0.1 (the demo partner) "
                "are allowed"
            )
        if load_state(settings.data_dir) is not None:
            # Where `dsr demo-partner` sends its acknowledgements.
            local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
            remember_service(settings.data_dir, f"http://{local}:{port}")
        typer.echo(
            f"qx-dsr on http://{host}:{port}: the privacy center at "
            f"http://{host}:{port}/privacy/ (API docs at /docs)"
        )
        if workers == 1:
            settle_heap()
            uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
            return
        # uvicorn's supervisor starts the processes; each builds its app from the environment,
        # which names the database this process started and migrated (so no second embedded
        # server) and the settings decided above.
        os.environ.update(process_environment(settings, url))
        uvicorn.run(
            f"{__name__}:process_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
        )


def process_environment(settings: Settings, url: str) -> dict[str, str]:
    """What one of several API processes needs to build the same app as this one."""
    values = {
        "DSR_DATABASE_URL": url,
        "DSR_RUN_WORKER": "true" if settings.run_worker else "false",
        "DSR_ALLOW_PRIVATE_WEBHOOKS": "true" if settings.allow_private_webhooks else "false",
    }
    for name in KEY_FIELDS:  # generated into data_dir in dev: the same in every process
        values[f"DSR_{name.upper()}"] = str(getattr(settings, name))
    return values


def process_app() -> FastAPI:
    """The app of one `dsr serve --workers N` process (uvicorn's factory)."""
    app = create_app(load_settings())
    settle_heap()
    return app


def settle_heap() -> None:
    """What start-up made lives as long as the process: out of the cyclic collector's way.

    Otherwise every full collection under load walks the whole framework (routes, models,
    validators: hundreds of thousands of objects), a pause that lands on some request's p99.
    """
    gc.collect()
    gc.freeze()


def worker(
    once: bool = typer.Option(False, "--once", help="Send what is due, then exit"),
) -> None:
    """Run the worker loop alone (scale out with several on one database)."""
    settings = with_demo_webhooks(load_settings())
    try:
        datamap = load_configured_datamap(settings)
    except ConfigError as exc:
        typer.secho(f"configuration error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None

    async def main() -> None:
        async with open_database(settings) as db, http_client() as http:
            ctx = build_context(
                settings=settings,
                db=db,
                crypto=Crypto.from_settings(settings),
                clock=SystemClock(),
                http=http,
                datamap=datamap,
            )
            loop_worker = Worker(ctx, build_registry())
            if once:
                await loop_worker.run_periodic()
                count = await loop_worker.drain()
                typer.echo(f"handled {count} messages")
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await loop_worker.run_forever(stop)

    with embedded_database_stopped_on_exit(settings):
        run_loop(main())


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the worker on uvloop when installed (uvicorn[standard] brings it): less CPU per send."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency through uvicorn[standard]
        asyncio.run(main)
        return
    uvloop.run(main)


def register(cli: typer.Typer) -> None:
    cli.command()(serve)
    cli.command()(worker)
