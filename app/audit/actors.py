"""Who did something, as the audit trail and the request history record it."""

from __future__ import annotations

from dataclasses import dataclass, field

# The role recorded for a staff member holding several: the most accountable one.
_ROLE_ORDER = ("privacy_officer", "admin", "support_agent", "service")


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
    def staff(cls, user_id: str, roles: frozenset[str], client_ip: str | None) -> Actor:
        role = next((name for name in _ROLE_ORDER if name in roles), "staff")
        return cls(id=f"staff:{user_id}", role=role, roles=roles, client_ip=client_ip)

    @classmethod
    def subject(cls, blind_index: str, client_ip: str | None) -> Actor:
        return cls(id=f"subject:{blind_index}", role="subject", client_ip=client_ip)


SYSTEM = Actor(id="system", role="system", roles=frozenset({"system"}))
