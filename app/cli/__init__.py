"""The `dsr` command. One small module per group of commands."""

from __future__ import annotations

import typer

from app.cli import audit, database, demo, openapi, purge, serve, token
from app.cli.common import set_verbose

# Plain help: typer's rich panels print "<bool>" beside every flag.
cli = typer.Typer(
    name="dsr",
    help="qx-dsr: data-subject requests under Korea's PIPA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@cli.callback()
def options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Also show the embedded PostgreSQL's and the migrations' own messages",
    ),
) -> None:
    """qx-dsr: data-subject requests under Korea's PIPA."""
    set_verbose(verbose)


serve.register(cli)
database.register(cli)
openapi.register(cli)
demo.register(cli)
audit.register(cli)
token.register(cli)
purge.register(cli)


def main() -> None:
    cli()
