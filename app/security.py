"""Tokens and roles. Every bearer token in the service is verified here and nowhere else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from jose import JWTError, jwt

from app.config import Settings
from app.errors import Unauthenticated

ISSUER = "qx-dsr"
SUBJECT_AUDIENCE = "qx-dsr:subject"
STAFF_AUDIENCE = "qx-dsr:staff"
DEV_KEY_ID = "dsr-dev-1"
ALGORITHMS = ["HS256"]  # explicit allow-list; never taken from the token


class Role(StrEnum):
    SUPPORT_AGENT = "support_agent"
    PRIVACY_OFFICER = "privacy_officer"
    ADMIN = "admin"
    SERVICE = "service"


STAFF_ROLES = frozenset({Role.SUPPORT_AGENT, Role.PRIVACY_OFFICER, Role.ADMIN})


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``subject`` is a blind index for data subjects, a user id for staff."""

    kind: Literal["subject", "staff", "service"]
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    identifier_kinds: tuple[str, ...] = ()
    token_id: str | None = None
    amr: tuple[str, ...] = ()

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


class TokenService:
    """Issues the service's own tokens and verifies every bearer token against the clock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key = settings.key_bytes("token_signing_key")

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="HS256", headers={"kid": DEV_KEY_ID})

    def issue_subject_token(
        self, *, blind_index: str, identifier_kinds: list[str], now: datetime, ttl: timedelta
    ) -> str:
        issued = int(now.timestamp())
        return self._sign(
            {
                "iss": ISSUER,
                "aud": SUBJECT_AUDIENCE,
                "sub": blind_index,
                "idk": identifier_kinds,
                "amr": ["otp"],
                "iat": issued,
                "nbf": issued,
                "exp": issued + int(ttl.total_seconds()),
                "jti": uuid.uuid4().hex,
            }
        )

    def issue_staff_token(
        self, *, sub: str, roles: list[str], now: datetime, ttl: timedelta
    ) -> str:
        issued = int(now.timestamp())
        return self._sign(
            {
                "iss": ISSUER,
                "aud": STAFF_AUDIENCE,
                "sub": sub,
                "roles": roles,
                "iat": issued,
                "nbf": issued,
                "exp": issued + int(ttl.total_seconds()),
                "jti": uuid.uuid4().hex,
            }
        )

    def verify(self, token: str, *, now: datetime) -> Principal:
        """Verify signature, issuer, audience and times (against the service clock)."""
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise Unauthenticated("The token is malformed.") from exc
        if header.get("alg") not in ALGORITHMS:
            raise Unauthenticated("The token's algorithm is not accepted.")
        if header.get("kid") not in (None, DEV_KEY_ID):
            raise Unauthenticated("The token's key is unknown.")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=ALGORITHMS,
                issuer=ISSUER,
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except JWTError as exc:
            raise Unauthenticated("The token is not valid.") from exc
        _check_times(claims, now)
        audience = claims.get("aud")
        if audience == SUBJECT_AUDIENCE:
            return Principal(
                kind="subject",
                subject=str(claims["sub"]),
                identifier_kinds=tuple(claims.get("idk", [])),
                token_id=claims.get("jti"),
                amr=tuple(claims.get("amr", [])),
            )
        if audience == STAFF_AUDIENCE:
            roles = frozenset(str(role) for role in claims.get("roles", []))
            kind: Literal["staff", "service"] = "service" if roles == {Role.SERVICE} else "staff"
            return Principal(
                kind=kind, subject=str(claims["sub"]), roles=roles, token_id=claims.get("jti")
            )
        raise Unauthenticated("The token's audience is not accepted.")


def _check_times(claims: dict[str, Any], now: datetime) -> None:
    current = now.timestamp()
    leeway = 30
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise Unauthenticated("The token has no expiry.")
    if current > exp + leeway:
        raise Unauthenticated("The token has expired.")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and current + leeway < nbf:
        raise Unauthenticated("The token is not valid yet.")
