"""Who did something, as the audit trail and the request history record it.

One convention for every caller: ``staff:<sub>`` for staff (the token's ``sub``), ranked by the
most accountable role held; ``subject:<blind index>`` for data subjects; ``system`` / ``worker…``
for the service itself. ``Actor.of`` builds it from a verified principal, in one place.

Rows written before this convention: processor and webhook-replay entries
(``LEGACY_BARE_ACTIONS``) named a staff member by the bare ``sub`` and ranked ``admin`` first;
verification entries (``LEGACY_BARE_SUBJECT_ACTIONS``) named the subject by the bare blind index.
They are sealed in the hash chain and are not rewritten; the audit query finds them under
``actor=staff:<sub>`` and ``actor=subject:<blind index>`` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.crypto import Crypto

if TYPE_CHECKING:
    from app.security import Principal

# The role recorded for a staff member holding several: the most accountable one.
_ROLE_ORDER = ("privacy_officer", "admin", "support_agent", "service")

STAFF_PREFIX = "staff:"
SUBJECT_PREFIX = "subject:"

# The actions whose older rows carry the bare staff ``sub`` (see the module docstring).
LEGACY_BARE_ACTIONS = (
    "processor.registered",
    "processor.updated",
    "processor.secret_rotated",
    "webhook.replayed",
    "webhook.bulk_replayed",
)
# The actions whose older rows carry the subject's bare blind index.
LEGACY_BARE_SUBJECT_ACTIONS = ("verification.confirmed", "verification.locked")


# What the audit trail keeps of a caller's address (never the address in clear): a keyed hash
# for everyone, and for staff, partners and services (not subjects) the address encrypted, as
# access records of personal-information handlers must name where they connected from
# (Safety Measures Standard Art. 8); only the privacy officer sees it, in an audited read.
CLIENT_IP_PURPOSE = "audit.client-ip"
CLIENT_IP_CONTEXT = "audit_entry.client_ip"


class ClientAddress(str):
    """The caller's address (as the request gave it) carrying its keyed hash and sealed form."""

    hmac: str
    sealed: bytes

    def __new__(cls, address: str, *, crypto: Crypto) -> ClientAddress:
        value = super().__new__(cls, address)
        value.hmac = crypto.mac(CLIENT_IP_PURPOSE, address)
        value.sealed = crypto.encrypt(address, context=CLIENT_IP_CONTEXT)
        return value


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
        return cls(id=f"{SUBJECT_PREFIX}{blind_index}", role="subject", client_ip=client_ip)


SYSTEM = Actor(id="system", role="system", roles=frozenset({"system"}))
