"""Layout rules a newcomer relies on: domains never import FastAPI; modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
DOMAINS = (
    "requests",
    "fulfilment",
    "datamap",
    "retention",
    "webhooks",
    "subjects",
    "audit",
    "notifications",
    "outbox",
)
WEB_FACING = ("fastapi", "starlette")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_domain_packages_never_import_the_web_framework() -> None:
    offenders = [
        f"{path.relative_to(APP)}: {name}"
        for domain in DOMAINS
        for path in (APP / domain).rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in WEB_FACING
    ]
    assert offenders == []


def test_there_is_no_flat_services_folder_any_more() -> None:
    assert not (APP / "services").exists()
    for domain in DOMAINS:
        assert (APP / domain / "__init__.py").is_file(), domain


def test_no_module_grows_past_about_500_lines() -> None:
    long = {
        str(path.relative_to(APP)): count
        for path in APP.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 560
    }
    assert long == {}
