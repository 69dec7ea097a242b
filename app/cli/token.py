"""`dsr token`: a staff or service token signed with the development key (never in prod)."""

from __future__ import annotations

import re
from datetime import timedelta

import typer

from app.cli.common import load_settings, read_settings
from app.clock import SystemClock
from app.security import Role, TokenService

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(value: str) -> timedelta:
    """3600, 90m, 8h or 1d."""
    match = _DURATION.match(value.strip())
    if match is None or int(match.group(1)) <= 0:
        raise typer.BadParameter("use seconds or a number with s, m, h or d (e.g. 8h)")
    return timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])


def token(
    role: list[str] = typer.Option(
        ..., "--role", help="support_agent, privacy_officer, admin or service (repeatable)"
    ),
    sub: str = typer.Option(..., "--sub", help="Who the token is for (a user or system name)"),
    ttl: str = typer.Option("1h", "--ttl", help="Lifetime: seconds, or 90m, 8h, 1d"),
) -> None:
    """Print a staff or service token signed with the dev key (refused when DSR_ENV=prod)."""
    settings = read_settings()
    if settings.env == "prod":
        typer.secho(
            "dsr token is for development: in prod, staff and service tokens come from the "
            "identity provider (DSR_STAFF_IDP_*)",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    known = {item.value for item in Role}
    unknown = [name for name in role if name not in known]
    if unknown:
        raise typer.BadParameter(
            f"unknown role; use {', '.join(sorted(known))}", param_hint="--role"
        )
    keys = (settings.data_dir / "keys.json").resolve()
    if not settings.token_signing_key and not keys.exists():
        # A key made up here would sign tokens the running service rejects (401).
        typer.secho(
            f"no development keys at {keys}: dsr token signs with the key of the service, "
            "which `dsr serve` keeps in its data dir. Run dsr token in the folder where you "
            "ran dsr serve, or point DSR_DATA_DIR at that data dir "
            "(or set DSR_TOKEN_SIGNING_KEY to the service's key).",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    settings = load_settings()
    issued = TokenService(settings).issue_staff_token(
        sub=sub, roles=list(dict.fromkeys(role)), now=SystemClock().now(), ttl=parse_ttl(ttl)
    )
    typer.echo(issued)


def register(cli: typer.Typer) -> None:
    cli.command()(token)
