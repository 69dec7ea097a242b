"""`dsr migrate`."""

from __future__ import annotations

import typer

from app.cli.common import embedded_database_stopped_on_exit, load_settings
from app.db import database_url
from app.migrate import upgrade


def migrate(revision: str = typer.Argument("head", help="Target revision")) -> None:
    """Upgrade the database schema (to head by default)."""
    settings = load_settings()
    with embedded_database_stopped_on_exit(settings):
        upgrade(database_url(settings), revision)
    typer.echo(f"database at {revision}")


def register(cli: typer.Typer) -> None:
    cli.command()(migrate)
