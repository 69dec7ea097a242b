"""What a data dir remembers about its demo: that it is one, where the stand-in partner listens
and where the service was last served.

`dsr serve --demo` (or `dsr demo`) writes it; a later `dsr serve` without `--demo` reads it to
keep allowing the partner's 127.0.0.1 URLs, and `dsr demo-partner` reads it to acknowledge to
the port the service really uses. Development only; nothing secret is kept here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

STATE_FILE = "demo.json"


@dataclass(frozen=True)
class DemoState:
    partner_url: str  # where the demo processors' webhooks go (`dsr demo-partner`)
    service_url: str | None = None  # where `dsr serve` last listened


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def load_state(data_dir: Path) -> DemoState | None:
    """The data dir's demo state; None when the data dir holds no demo."""
    path = state_path(data_dir)
    if not path.exists():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    return DemoState(partner_url=stored["partner_url"], service_url=stored.get("service_url"))


def save_state(data_dir: Path, state: DemoState) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    state_path(data_dir).write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")


def mark_demo(data_dir: Path, *, partner_url: str) -> DemoState:
    """Remember that this data dir holds the demo (keeping a partner URL chosen earlier)."""
    state = load_state(data_dir) or DemoState(partner_url=partner_url)
    save_state(data_dir, state)
    return state


def remember_service(data_dir: Path, service_url: str) -> None:
    state = load_state(data_dir)
    if state is not None and state.service_url != service_url:
        save_state(data_dir, replace(state, service_url=service_url))


def remember_partner(data_dir: Path, partner_url: str) -> None:
    state = load_state(data_dir)
    if state is not None and state.partner_url != partner_url:
        save_state(data_dir, replace(state, partner_url=partner_url))
