"""Layout rules a newcomer relies on: domains never import FastAPI; modules stay small."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
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
# Packages that are not domains: the web side (may import FastAPI) and the central ones.
WEB_PACKAGES = ("routers", "web", "cli", "demo")  # demo: its partner server is a FastAPI app
CENTRAL_PACKAGES = ("models", "schemas")
# Top-level modules of the web side; every other top-level module is shared by the domains.
WEB_MODULES = ("deps.py", "main.py", "middleware.py", "problems.py", "input_guard.py")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def rule_modules() -> list[Path]:
    """The domain packages, the central packages and the shared top-level modules."""
    packages = [
        path for name in (*DOMAINS, *CENTRAL_PACKAGES) for path in (APP / name).rglob("*.py")
    ]
    shared = [path for path in APP.glob("*.py") if path.name not in WEB_MODULES]
    return sorted([*packages, *shared])


def test_every_package_is_a_domain_or_named_as_web_or_central() -> None:
    # A new package is checked below only if it is listed: a package nobody classified fails.
    packages = {path.parent.name for path in APP.glob("*/__init__.py")}
    assert packages == {*DOMAINS, *WEB_PACKAGES, *CENTRAL_PACKAGES}


def test_domain_packages_never_import_the_web_framework() -> None:
    offenders = [
        f"{path.relative_to(APP)}: {name}"
        for path in rule_modules()
        for name in imported_modules(path)
        if name.split(".")[0] in WEB_FACING
    ]
    assert offenders == []


def test_nor_through_another_module() -> None:
    # ``from app.deps import ...`` in a service would bring FastAPI in without naming it.
    modules = [
        ".".join(path.relative_to(APP.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in rule_modules()
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(WEB_FACING)!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=APP.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_there_is_no_flat_services_folder_any_more() -> None:
    assert not (APP / "services").exists()
    for domain in DOMAINS:
        assert (APP / domain / "__init__.py").is_file(), domain


def test_no_module_grows_past_about_500_lines() -> None:
    # "About": a module a little over 500 lines is split at its next change; past 560 it fails.
    long = {
        str(path.relative_to(APP)): count
        for path in APP.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 560
    }
    assert long == {}


# The service's own actor ids (CONTRIBUTING.md, "Who acted"); a person is always an ``Actor``.
SERVICE_ACTOR = re.compile(r"^(system|worker(:[a-z-]+)?|cli:[a-z-]+)$")
SERVICE_ROLES = ("system", "processor", "subject")
AUDIT_WRITERS = ("trail.record", "trail.entry_values")


def _actor_ok(value: ast.expr) -> bool:
    if isinstance(value, ast.Attribute) and value.attr == "id":
        return True  # an Actor's id (staff:<sub>, subject:<blind index>, system)
    if isinstance(value, ast.Name):
        return True  # passed through from the caller, checked where it is made
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return bool(SERVICE_ACTOR.match(value.value))
    if isinstance(value, ast.JoinedStr) and value.values:
        first = value.values[0]
        return isinstance(first, ast.Constant) and first.value == "processor:"
    return False


def _role_ok(value: ast.expr) -> bool:
    if (isinstance(value, ast.Attribute) and value.attr == "role") or isinstance(value, ast.Name):
        return True
    return isinstance(value, ast.Constant) and value.value in SERVICE_ROLES


def test_who_acted_is_made_by_actor_only() -> None:
    # A staff member or subject named by hand (f"staff:{sub}", a bare blind index, a role picked
    # from a set) is how the audit trail once had two conventions.
    offenders = []
    for path in sorted(APP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or ast.unparse(node.func) not in AUDIT_WRITERS:
                continue
            for keyword in node.keywords:
                check = {"actor": _actor_ok, "role": _role_ok}.get(keyword.arg or "")
                if check is not None and not check(keyword.value):
                    offenders.append(
                        f"{path.relative_to(APP)}:{node.lineno} "
                        f"{keyword.arg}={ast.unparse(keyword.value)}"
                    )
    assert offenders == []
