"""The `dsr` command. One small module per group of commands."""

from __future__ import annotations

import typer

from app.cli import audit, database, demo, openapi, purge, serve, token

cli = typer.Typer(
    name="dsr",
    help="qx-dsr: data-subject requests under Korea's PIPA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
serve.register(cli)
database.register(cli)
openapi.register(cli)
demo.register(cli)
audit.register(cli)
token.register(cli)
purge.register(cli)


def main() -> None:
    cli()
