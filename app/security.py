"""Tokens and roles. Every bearer token in the service is verified here and nowhere else.

Each trusted issuer has its own algorithm allow-list and its own keys, chosen by the token's
``iss`` before anything else is believed:

- this service (``qx-dsr``, HS256 with ``DSR_TOKEN_SIGNING_KEY``): subject tokens after a one-time
  code; in dev/test also staff and service tokens printed by ``dsr token``;
- the company identity provider (RS*/ES* only, a JWKS URL or a static public key): staff and
  service tokens, its ``roles`` claim mapped to ours;
- optionally the mobile app (RS*/ES* only): a session with a verified phone number, taken as
  equal to a one-time-code verification of that number.

A token's ``alg`` is only ever checked against the issuer's list, never used to pick a key type,
so ``alg: none`` and HS256-signed-with-a-public-key tokens cannot pass.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import httpx
from jose import jws, jwt
from jose.exceptions import JOSEError

from app.config import ConfigError, Settings, check_token_issuers
from app.crypto import Crypto
from app.errors import InvalidInput, Unauthenticated
from app.keys import JwksKeys, KeySource, StaticKeys, VerificationKey, static_key
from app.subjects.identifiers import normalise_phone

logger = logging.getLogger("dsr.security")

ISSUER = "qx-dsr"
SUBJECT_AUDIENCE = "qx-dsr:subject"
STAFF_AUDIENCE = "qx-dsr:staff"
# The support console's session (after signing in with the identity provider; any env).
CONSOLE_AUDIENCE = "qx-dsr:console"
DEV_KEY_ID = "dsr-dev-1"
ALGORITHMS = ["HS256"]  # our own tokens' allow-list; never taken from the token


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
    issuer: str | None = None
    expires_at: datetime | None = None
    # Every verified identifier's blind index, ``subject`` first (a subject who verified two).
    subject_indexes: tuple[str, ...] = ()

    @property
    def indexes(self) -> tuple[str, ...]:
        """The blind indexes this subject proved: the primary one, then any added."""
        return self.subject_indexes or (self.subject,)

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


@dataclass(frozen=True)
class VerifiedIdentifier:
    """An identifier another issuer vouched for (normalised). Never log the value."""

    kind: Literal["phone", "email"]
    value: str = field(repr=False)


@dataclass(frozen=True)
class Authentication:
    principal: Principal
    identifier: VerifiedIdentifier | None = None


@dataclass(frozen=True)
class TrustedIssuer:
    name: Literal["own", "staff_idp", "mobile"]
    issuer: str
    audiences: frozenset[str]
    algorithms: frozenset[str]
    keys: KeySource


# Verified tokens kept per process: how long, and how many (the oldest goes first).
VERIFIED_TTL_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class _Verified:
    authentication: Authentication
    times: dict[str, Any]
    at: float  # time.monotonic() when verified


@dataclass(frozen=True)
class _Parsed:
    token: str
    issuer: TrustedIssuer
    alg: str
    kid: str | None


class TokenService:
    """Issues the service's own tokens and verifies every bearer token against the clock."""

    def __init__(self, settings: Settings) -> None:
        check_token_issuers(settings)
        self.settings = settings
        self._key = settings.key_bytes("token_signing_key")
        self._crypto = Crypto.from_settings(settings)
        self._leeway = settings.token_leeway_seconds
        self._role_map = _role_map(settings.staff_idp_role_map)
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self.issuers: dict[str, TrustedIssuer] = {}
        own_audiences = {SUBJECT_AUDIENCE, CONSOLE_AUDIENCE}
        if settings.env != "prod":
            own_audiences.add(STAFF_AUDIENCE)  # `dsr token` staff/service tokens: dev/test only
        self._add(
            TrustedIssuer(
                name="own",
                issuer=ISSUER,
                audiences=frozenset(own_audiences),
                algorithms=frozenset(ALGORITHMS),
                keys=StaticKeys(VerificationKey(kid=DEV_KEY_ID, kty="oct", material=self._key)),
            )
        )
        if settings.staff_idp_issuer and settings.staff_idp_audience:
            self._add(
                TrustedIssuer(
                    name="staff_idp",
                    issuer=settings.staff_idp_issuer,
                    audiences=frozenset({settings.staff_idp_audience}),
                    algorithms=frozenset(settings.staff_idp_algorithms),
                    keys=self._key_source(
                        settings.staff_idp_jwks_url,
                        settings.staff_idp_public_key,
                        settings.staff_idp_key_id,
                        "DSR_STAFF_IDP_PUBLIC_KEY",
                    ),
                )
            )
        if (
            settings.mobile_tokens_enabled
            and settings.mobile_token_issuer
            and settings.mobile_token_audience
        ):
            self._add(
                TrustedIssuer(
                    name="mobile",
                    issuer=settings.mobile_token_issuer,
                    audiences=frozenset({settings.mobile_token_audience}),
                    algorithms=frozenset(settings.mobile_algorithms),
                    keys=self._key_source(
                        settings.mobile_jwks_url,
                        settings.mobile_public_key,
                        settings.mobile_key_id,
                        "DSR_MOBILE_PUBLIC_KEY",
                    ),
                )
            )

    def _add(self, issuer: TrustedIssuer) -> None:
        if issuer.issuer in self.issuers:
            raise ConfigError("two trusted token issuers share one `iss` value")
        self.issuers[issuer.issuer] = issuer

    def _key_source(
        self, jwks_url: str | None, pem: str | None, kid: str | None, setting: str
    ) -> KeySource:
        if jwks_url:
            return JwksKeys(
                jwks_url,
                cache_seconds=self.settings.jwks_cache_seconds,
                min_refresh_seconds=self.settings.jwks_min_refresh_seconds,
            )
        assert pem is not None  # check_token_issuers guarantees one of the two
        return StaticKeys(static_key(pem, kid=kid, setting=setting))

    # -- issuing (our own tokens) ---------------------------------------------------------

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="HS256", headers={"kid": DEV_KEY_ID})

    def issue_subject_token(
        self,
        *,
        blind_index: str,
        identifier_kinds: list[str],
        now: datetime,
        ttl: timedelta,
        also_indexes: list[str] | None = None,
    ) -> str:
        """A subject token; ``also_indexes``: identifiers verified besides ``blind_index``."""
        issued = int(now.timestamp())
        extra = [index for index in also_indexes or [] if index != blind_index]
        return self._sign(
            {
                "iss": ISSUER,
                "aud": SUBJECT_AUDIENCE,
                "sub": blind_index,
                "idk": identifier_kinds,
                **({"idx": [blind_index, *extra]} if extra else {}),
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
        """A staff or service token signed with our own key (accepted in dev/test only)."""
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

    def issue_console_token(
        self, *, sub: str, roles: list[str], amr: list[str], now: datetime, ttl: timedelta
    ) -> str:
        """The console's session token, once the identity provider (or, in dev, the development
        sign-in) said who this is; it carries the roles the provider's token mapped to."""
        issued = int(now.timestamp())
        return self._sign(
            {
                "iss": ISSUER,
                "aud": CONSOLE_AUDIENCE,
                "sub": sub,
                "roles": roles,
                "amr": amr,
                "iat": issued,
                "nbf": issued,
                "exp": issued + int(ttl.total_seconds()),
                "jti": uuid.uuid4().hex,
            }
        )

    async def verify_id_token(
        self,
        token: str,
        *,
        now: datetime,
        http: httpx.AsyncClient | None,
        client_id: str,
        nonce: str,
    ) -> Principal:
        """An OpenID Connect ID token from the staff identity provider, for the console's
        sign-in: its keys and algorithms, audience the console's client id, our nonce, and the
        roles claim mapped as for the provider's API tokens."""
        parsed = self._parse(token)
        if parsed.issuer.name != "staff_idp":
            raise Unauthenticated("The token's issuer is not accepted.")
        key = await parsed.issuer.keys.resolve(parsed.kid, http=http, now=now)
        if key is None:
            raise Unauthenticated("The token's key is unknown.")
        claims, _ = self._claims(parsed, key, now, audiences=frozenset({client_id}))
        if not isinstance(nonce, str) or claims.get("nonce") != nonce:
            raise Unauthenticated("The token was not issued for this sign-in.")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthenticated("The token names no subject.")
        raw = _listed(claims.get(self.settings.staff_idp_roles_claim))
        roles = frozenset(self._role_map[name] for name in raw if name in self._role_map)
        return Principal(
            kind="staff",
            subject=sub,
            roles=frozenset(roles) & STAFF_ROLES,
            issuer=parsed.issuer.issuer,
            amr=("oidc",),
        )

    # -- verifying -------------------------------------------------------------------------

    def verify(self, token: str, *, now: datetime) -> Principal:
        """Verify with the keys already known (no fetching); see ``authenticate``."""
        parsed = self._parse(token)
        key = parsed.issuer.keys.find(parsed.kid)
        if key is None:
            raise Unauthenticated("The token's key is unknown.")
        return self._finish(parsed, key, now)[0].principal

    async def authenticate(
        self, token: str, *, now: datetime, http: httpx.AsyncClient | None = None
    ) -> Authentication:
        """Verify a bearer token, fetching an issuer's key set when needed (rotation).

        A token verified in the last ``VERIFIED_TTL_SECONDS`` is not verified again (an
        internal system sends the same service token with every usage check); its times are,
        on every call, against the service clock. A cached answer carries no identifier to
        remember: the first call remembered it.
        """
        cached = self._verified.get(token)
        if cached is not None and time.monotonic() - cached.at < VERIFIED_TTL_SECONDS:
            _check_times(cached.times, now, self._leeway)
            return cached.authentication
        parsed = self._parse(token)
        key = await parsed.issuer.keys.resolve(parsed.kid, http=http, now=now)
        if key is None:
            raise Unauthenticated("The token's key is unknown.")
        authentication, times = self._finish(parsed, key, now)
        self._verified[token] = _Verified(
            Authentication(authentication.principal), times, time.monotonic()
        )
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)  # the oldest first
        return authentication

    def _parse(self, token: str) -> _Parsed:
        if len(token) > self.settings.token_max_bytes or token.count(".") != 2:
            raise Unauthenticated("The token is malformed.")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.get_unverified_claims(token)
        except JOSEError:
            raise Unauthenticated("The token is malformed.") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
            raise Unauthenticated("The token is malformed.")
        if "crit" in header:
            raise Unauthenticated("The token uses extensions this service does not support.")
        iss = unverified.get("iss") if isinstance(unverified, dict) else None
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthenticated("The token's issuer is not accepted.")
        if alg not in issuer.algorithms:
            raise Unauthenticated("The token's algorithm is not accepted.")
        return _Parsed(token=token, issuer=issuer, alg=alg, kid=kid)

    def _claims(
        self,
        parsed: _Parsed,
        key: VerificationKey,
        now: datetime,
        *,
        audiences: frozenset[str],
    ) -> tuple[dict[str, Any], datetime]:
        """The verified claims (signature, issuer, one of ``audiences``, times) and the expiry."""
        issuer = parsed.issuer
        try:
            # The signature only: the claims are checked below, against the service clock
            # (jwt.decode would parse the token a third time to check what we check here).
            payload = jws.verify(parsed.token, key.for_algorithm(parsed.alg), [parsed.alg])
            claims = json.loads(payload)
        except (JOSEError, ValueError):
            raise Unauthenticated("The token is not valid.") from None
        if not isinstance(claims, dict) or claims.get("iss") != issuer.issuer:
            raise Unauthenticated("The token is not valid.")
        named = claims.get("aud")
        named = [named] if isinstance(named, str) else named
        if not isinstance(named, list) or not audiences.intersection(named):
            raise Unauthenticated("The token's audience is not accepted.")
        return claims, _check_times(claims, now, self._leeway)

    def _finish(
        self, parsed: _Parsed, key: VerificationKey, now: datetime
    ) -> tuple[Authentication, dict[str, Any]]:
        """The caller the verified token names, and its time claims (to check again later)."""
        issuer = parsed.issuer
        claims, expires_at = self._claims(parsed, key, now, audiences=issuer.audiences)
        times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
        return self._caller(issuer, claims, expires_at), times

    def _caller(
        self, issuer: TrustedIssuer, claims: dict[str, Any], expires_at: datetime
    ) -> Authentication:
        named = claims.get("aud")
        audiences: list[Any] = [named] if isinstance(named, str) else list(named or [])
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthenticated("The token names no subject.")
        common: dict[str, Any] = {
            "token_id": claims.get("jti") if isinstance(claims.get("jti"), str) else None,
            "issuer": issuer.issuer,
            "expires_at": expires_at,
        }
        if issuer.name == "mobile":
            return self._mobile(claims, common)
        if issuer.name == "own" and SUBJECT_AUDIENCE in audiences:
            # Only we sign these, so their shape is ours; still, never trust a malformed one.
            kinds = claims.get("idk")
            if not isinstance(kinds, list) or not all(isinstance(kind, str) for kind in kinds):
                raise Unauthenticated("The token is not valid.")
            amr = claims.get("amr")
            indexes = claims.get("idx", [sub])
            if (
                not isinstance(indexes, list)
                or not all(isinstance(index, str) and index for index in indexes)
                or indexes[:1] != [sub]
            ):
                raise Unauthenticated("The token is not valid.")
            return Authentication(
                Principal(
                    kind="subject",
                    subject=sub,
                    identifier_kinds=tuple(kinds),
                    subject_indexes=tuple(dict.fromkeys(indexes)) if len(indexes) > 1 else (),
                    amr=tuple(str(m) for m in amr) if isinstance(amr, list) else (),
                    **common,
                )
            )
        if issuer.name == "own":
            roles = frozenset(_listed(claims.get("roles")) & set(Role))
        else:
            raw = _listed(claims.get(self.settings.staff_idp_roles_claim))
            roles = frozenset(self._role_map[name] for name in raw if name in self._role_map)
        kind: Literal["staff", "service"] = "service" if roles == {Role.SERVICE} else "staff"
        return Authentication(Principal(kind=kind, subject=sub, roles=roles, **common))

    def _mobile(self, claims: dict[str, Any], common: dict[str, Any]) -> Authentication:
        settings = self.settings
        phone = claims.get(settings.mobile_phone_claim)
        if claims.get(settings.mobile_phone_verified_claim) is not True or not isinstance(
            phone, str
        ):
            raise Unauthenticated("The token carries no verified phone number.")
        try:
            normalised = normalise_phone(phone)
        except InvalidInput:
            raise Unauthenticated("The token carries no verified phone number.") from None
        principal = Principal(
            kind="subject",
            subject=self._crypto.blind_index("phone", normalised),
            identifier_kinds=("phone",),
            amr=("mobile_app",),
            **common,
        )
        return Authentication(principal, VerifiedIdentifier(kind="phone", value=normalised))


def _listed(value: Any) -> set[str]:
    """A roles claim as a set: a JSON list or a space-separated string (OAuth scope style)."""
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def _role_map(configured: dict[str, str]) -> dict[str, Role]:
    if not configured:
        return {role.value: role for role in Role}
    try:
        return {name: Role(ours) for name, ours in configured.items()}
    except ValueError:
        raise ConfigError(
            "DSR_STAFF_IDP_ROLE_MAP values must be " + ", ".join(role.value for role in Role)
        ) from None


# The last second a datetime holds (9999-12-31T23:59:59Z).
LATEST_EXPIRY = 253402300799


def _check_times(claims: dict[str, Any], now: datetime, leeway: int) -> datetime:
    """Check exp (required), nbf and iat against the service clock; returns the expiry."""
    current = now.timestamp()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Unauthenticated("The token has no expiry.")
    # NaN would pass every comparison below, and a time past year 9999 cannot be a datetime.
    if not math.isfinite(exp) or not 0 <= exp <= LATEST_EXPIRY:
        raise Unauthenticated("The token's expiry is not valid.")
    if current > exp + leeway:
        raise Unauthenticated("The token has expired.")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise Unauthenticated("The token is not valid.")
        if current + leeway < value:
            raise Unauthenticated("The token is not valid yet.")
    return datetime.fromtimestamp(exp, UTC)
