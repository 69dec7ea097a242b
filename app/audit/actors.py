"""Who did something, as the audit trail and the request history record it.

One convention for every caller: ``staff:<sub>`` for staff (the token's ``sub``), ranked by the
most accountable role held; ``subject:<blind index>`` for data subjects; ``system`` / ``worker…``
for the service itself. ``Actor.of`` builds it from a verified principal, in one place.

Rows written before this convention: processor and webhook-replay entries
(``LEGACY_BARE_ACTIONS``) named a staff member by the bare ``sub`` and ranked ``admin`` first.
They are sealed in the hash chain and are not rewritten; the audit query finds them under
``actor=staff:<sub>`` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.security import Principal

# The role recorded for a staff member holding several: the most accountable one.
_ROLE_ORDER = ("privacy_officer", "admin", "support_agent", "service")

STAFF_PREFIX = "staff:"

# The actions whose older rows carry the bare staff ``sub`` (see the module docstring).
LEGACY_BARE_ACTIONS = (
    "processor.registered",
    "processor.updated",
    "processor.secret_rotated",
    "webhook.replayed",
    "webhook.bulk_replayed",
)


@dataclass(frozen=True)
class Actor:
    id: str
    role: str
    roles: frozenset[str] = field(default_factory=frozenset)
    client_ip: str | None = None

    @property
    def is_officer(self) -> bool:
        return "privacy_officer" in self.roles

    @classmethod
    def of(cls, principal: Principal, client_ip: str | None) -> Actor:
        """The actor for a verified caller: the one place an audit actor id is made."""
        if principal.kind == "subject":
            return cls.subject(principal.subject, client_ip)
        return cls.staff(principal.subject, principal.roles, client_ip)

    @classmethod
    def staff(cls, user_id: str, roles: frozenset[str], client_ip: str | None) -> Actor:
        role = next((name for name in _ROLE_ORDER if name in roles), "staff")
        return cls(id=f"{STAFF_PREFIX}{user_id}", role=role, roles=roles, client_ip=client_ip)

    @classmethod
    def subject(cls, blind_index: str, client_ip: str | None) -> Actor:
        return cls(id=f"subject:{blind_index}", role="subject", client_ip=client_ip)


SYSTEM = Actor(id="system", role="system", roles=frozenset({"system"}))
