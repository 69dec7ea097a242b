"""`dsr purge`: destroy retained records whose legal retention period is over."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.common import load_settings, open_database
from app.clock import SystemClock
from app.retention import rules, store


def _table(title: str, counts: dict[str, int], settings_rules: dict[str, str]) -> Table:
    table = Table(title=title)
    table.add_column("rule")
    table.add_column("legal basis")
    table.add_column("records", justify="right")
    for rule, count in sorted(counts.items()):
        table.add_row(rule, settings_rules.get(rule, "?"), str(count))
    table.add_row("total", "", str(sum(counts.values())), style="bold")
    return table


def purge(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what is due; destroy nothing"),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, max=50_000, help="Records per transaction"
    ),
) -> None:
    """Crypto-shred retained records that are due: data key first, then the record."""
    settings = load_settings()
    console = Console(stderr=False)
    batch = batch_size or settings.retention_purge_batch_size
    bases = {name: term.legal_basis_en for name, term in rules.retention_rules(settings).items()}

    async def main() -> store.PurgeCounts:
        now = SystemClock().now()
        total = store.PurgeCounts()
        async with open_database(settings) as db:
            async with db.transaction() as session:
                due = await store.count_due(session, now=now)
            if dry_run:
                total.by_rule = due
                total.destroyed = 0
                return total
            columns = (
                TextColumn("destroying"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=False) as progress:
                task = progress.add_task("purge", total=sum(due.values()))
                while True:
                    async with db.transaction() as session:
                        counts = await store.purge_due(
                            session, now=now, batch=batch, actor="cli:purge"
                        )
                    if counts.destroyed == 0:
                        break
                    total.add(counts)
                    progress.update(task, completed=min(total.destroyed, sum(due.values())))
        return total

    result = asyncio.run(main())
    if dry_run:
        console.print(
            _table("due for destruction (dry run: nothing destroyed)", result.by_rule, bases)
        )
        typer.echo(f"would destroy {sum(result.by_rule.values())} records")
        return
    console.print(_table("destroyed", result.by_rule, bases))
    typer.echo(f"destroyed {result.destroyed} records")


def register(cli: typer.Typer) -> None:
    cli.command()(purge)
