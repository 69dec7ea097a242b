"""`dsr openapi`: write the published contract, or check it has not drifted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from app.config import KEY_FIELDS, Settings, new_key


def render_openapi() -> str:
    from app.main import create_app

    # Throwaway keys: the schema does not depend on them, and nothing is written to disk.
    settings = Settings(env="test", **{name: new_key() for name in KEY_FIELDS})  # type: ignore[arg-type]
    spec: dict[str, Any] = create_app(settings, start_worker=False).openapi()
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)


def openapi(
    check: bool = typer.Option(False, "--check", help="Exit 1 if the file differs from the app"),
    output: Path = typer.Option(Path("openapi.yaml"), help="Where the spec lives"),
) -> None:
    """Write openapi.yaml from the app (or --check it for drift)."""
    rendered = render_openapi()
    if check:
        current = output.read_text() if output.exists() else ""
        if current != rendered:
            typer.secho(
                f"{output} is out of date: run `dsr openapi` and commit it", err=True, fg="red"
            )
            raise typer.Exit(1)
        typer.echo(f"{output} is up to date")
        return
    output.write_text(rendered)
    typer.echo(f"wrote {output}")


def register(cli: typer.Typer) -> None:
    cli.command()(openapi)
