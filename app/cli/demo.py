"""`dsr demo`: load the demo dataset (policy section 1 shaped) and write its data map."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from urllib.parse import urlsplit

import typer
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.common import (
    embedded_database_stopped_on_exit,
    load_settings,
    open_database,
    read_settings,
)
from app.config import Settings
from app.crypto import Crypto
from app.datamap.connectors.postgres import connect
from app.datamap.loader import datamap_path
from app.db import Database, database_url
from app.demo.load import DEMO_SUBJECT, DemoLoaded, demo_present, load_demo, write_demo_datamap
from app.demo.load import Progress as DemoProgress
from app.demo.partner import load_secrets, partner_app, point_processors_at, save_secrets
from app.demo.processors import CONTROLLERS, PROCESSORS
from app.demo.state import load_state, mark_demo, remember_partner
from app.migrate import upgrade
from app.webhooks import processors


async def _load(
    url: str, *, subjects: int, records: int, reset: bool, seed: int, show_progress: bool
) -> DemoLoaded:
    conn = await connect(url)

    async def run(progress: DemoProgress | None = None) -> DemoLoaded:
        return await load_demo(
            conn,
            subjects=subjects,
            records_per_subject=records,
            now=datetime.now(UTC),
            reset=reset,
            seed=seed,
            progress=progress,
        )

    try:
        if not reset and await demo_present(conn):
            return DemoLoaded(created=False, rows=0)  # before any progress bar: nothing to do
        if not show_progress:
            return await run()
        columns = (
            TextColumn("[bold]demo[/bold] subjects"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("subjects", total=subjects)
            return await run(lambda done, total: bar.update(task, completed=done))
    finally:
        await conn.close()


async def _seed_processors(settings: Settings, url: str, *, partner_url: str | None = None) -> None:
    """Register the policy's section 3 processors, pointing at the stand-in partner."""
    db = Database.connect(url, pool_size=1)
    try:
        async with db.transaction() as session:
            created = await processors.ensure_processors(
                session,
                crypto=Crypto.from_settings(settings),
                now=datetime.now(UTC),
                processors=[p.seed() for p in (*PROCESSORS, *CONTROLLERS)],
                webhook_base_url=partner_url or settings.demo_partner_url,
            )
    finally:
        await db.dispose()
    save_secrets(settings.data_dir, created)


def ensure_demo(
    settings: Settings,
    url: str,
    *,
    subjects: int = 200,
    records: int = 5,
    reset: bool = False,
    seed: int = 2026,
    show_progress: bool = True,
) -> DemoLoaded:
    """Load the demo schema unless present (or reset) and write its data map."""
    # Remembered first: a later `dsr serve` keeps allowing the partner's 127.0.0.1 URLs.
    state = mark_demo(settings.data_dir, partner_url=settings.demo_partner_url)
    loaded = asyncio.run(
        _load(
            url,
            subjects=subjects,
            records=records,
            reset=reset,
            seed=seed,
            show_progress=show_progress,
        )
    )
    asyncio.run(_seed_processors(settings, url, partner_url=state.partner_url))
    path = datamap_path(settings)
    if not write_demo_datamap(path):
        typer.secho(
            f"kept {path}: it is not a demo data map (set DSR_DATAMAP_PATH elsewhere to use the "
            "demo map)",
            err=True,
            fg="yellow",
        )
    return loaded


def demo(
    subjects: int = typer.Option(200, min=0, help="Generated data subjects besides the demo one"),
    records_per_subject: int = typer.Option(5, min=1, help="Deliveries per generated subject"),
    reset: bool = typer.Option(False, "--reset", help="Drop the demo schema and load it again"),
    seed: int = typer.Option(2026, help="Random seed (the same seed gives the same people)"),
) -> None:
    """Create the `demo` schema (deliveries, reservations, counseling, app, marketing, logs)."""
    settings = load_settings()
    url = database_url(settings)
    upgrade(url)  # the processors registry lives in the service's schema
    loaded = ensure_demo(
        settings, url, subjects=subjects, records=records_per_subject, reset=reset, seed=seed
    )
    if loaded.created:
        typer.echo(f"demo schema loaded: {loaded.rows} rows")
    else:
        typer.echo("demo schema already present (use --reset to load it again)")
    typer.echo(f"data map: {datamap_path(settings)}")
    typer.echo(
        f"demo subject: phone {DEMO_SUBJECT.phone}, e-mail {DEMO_SUBJECT.email} "
        "(verify either to request an access report)"
    )


def demo_partner(
    port: int | None = typer.Option(
        None,
        help="Port of the stand-in partner; the demo processors are re-pointed to it "
        "[default: the last one, else 8900 (DSR_DEMO_PARTNER_URL)]",
    ),
    no_ack: bool = typer.Option(False, "--no-ack", help="Receive only; do not acknowledge"),
) -> None:
    """Run a stand-in partner carrier that verifies the demo processors' webhooks."""
    raw = read_settings()
    secrets = load_secrets(raw.data_dir)
    if not secrets:
        typer.secho(
            f"no demo processors in {raw.data_dir.resolve()}: run `dsr demo` (or "
            "`dsr serve --demo`) first, or point DSR_DATA_DIR at the service's data dir",
            err=True,
            fg="red",
        )
        raise typer.Exit(2)
    settings = load_settings()
    state = load_state(settings.data_dir)
    current = state.partner_url if state else settings.demo_partner_url
    listen = (urlsplit(current).port or 8900) if port is None else port
    wanted = f"http://127.0.0.1:{listen}"
    if wanted != current.rstrip("/"):
        moved = _repoint(settings, codes=sorted(secrets), old_url=current, new_url=wanted)
        remember_partner(settings.data_dir, wanted)
        typer.echo(f"{moved} demo processors now send their webhooks to {wanted}")
    # Acknowledge to where the service really listens: DSR_PUBLIC_BASE_URL when set, else the
    # address `dsr serve` last used in this data dir.
    explicit = "public_base_url" in settings.model_fields_set
    service_url = settings.public_base_url
    if not explicit and state is not None and state.service_url:
        service_url = state.service_url
    typer.echo(
        f"stand-in partner for {len(secrets)} processors on {wanted}, acknowledging to "
        f"{service_url}"
    )
    app = partner_app(secrets, service_url=service_url, acknowledge=not no_ack)
    uvicorn.run(app, host="127.0.0.1", port=listen, log_config=None, access_log=False)


def _repoint(settings: Settings, *, codes: list[str], old_url: str, new_url: str) -> int:
    async def main() -> int:
        async with open_database(settings) as db, db.transaction() as session:
            return await point_processors_at(
                session, now=datetime.now(UTC), codes=codes, old_url=old_url, new_url=new_url
            )

    with embedded_database_stopped_on_exit(settings):
        return asyncio.run(main())


def register(cli: typer.Typer) -> None:
    cli.command()(demo)
    cli.command("demo-partner")(demo_partner)
