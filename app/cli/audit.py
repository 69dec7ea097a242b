"""`dsr audit verify`: walk the hash chain and name the first entry that does not match."""

from __future__ import annotations

import asyncio

import typer

from app.audit import trail
from app.cli.common import load_settings, open_database

app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True, rich_markup_mode=None)


@app.command()
def verify() -> None:
    """Check every audit entry against its hash and its predecessor's; exit 1 at the first break."""
    settings = load_settings()

    async def main() -> tuple[int, int | None]:
        async with open_database(settings) as db:
            async with db.transaction() as session:  # chain what the worker has not yet
                while await trail.seal_pending(session):
                    pass
            async with db.sessionmaker() as session:
                return await trail.verify_chain(session)

    checked, broken = asyncio.run(main())
    if broken is not None:
        typer.secho(
            f"audit chain broken at entry {broken} ({checked} entries checked)",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1)
    typer.echo(f"audit chain intact: {checked} entries")


def register(cli: typer.Typer) -> None:
    cli.add_typer(app, name="audit")
