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

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jose import jwt
from jose.backends.base import Key

# The cryptography backend, named: python-jose falls back to ``ecdsa``/``rsa`` (pure Python,
# with known timing weaknesses) when it cannot import it; this import fails loudly instead.
from jose.backends.cryptography_backend import (
    CryptographyECKey,
    CryptographyHMACKey,
    CryptographyRSAKey,
)
from jose.exceptions import JOSEError

from app.config import EXTERNAL_ALGORITHMS, ConfigError, Settings, check_token_issuers
from app.crypto import Crypto
from app.errors import InvalidInput, ServiceUnavailable, Unauthenticated
from app.subjects.identifiers import normalise_phone

logger = logging.getLogger("dsr.security")

ISSUER = "qx-dsr"
SUBJECT_AUDIENCE = "qx-dsr:subject"
STAFF_AUDIENCE = "qx-dsr:staff"
DEV_KEY_ID = "dsr-dev-1"
ALGORITHMS = ["HS256"]  # our own tokens' allow-list; never taken from the token

_KEY_TYPE = {"HS": "oct", "RS": "RSA", "ES": "EC"}
_KEY_CLASS: dict[str, type[Key]] = {
    "oct": CryptographyHMACKey,
    "RSA": CryptographyRSAKey,
    "EC": CryptographyECKey,
}
_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_PUBLIC_MEMBERS = ("kty", "kid", "alg", "use", "n", "e", "crv", "x", "y")


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
class VerificationKey:
    """One key an issuer signs with, and what it may verify."""

    kid: str | None
    kty: str
    material: Any  # bytes (oct), a PEM string or a public JWK dict
    alg: str | None = None
    crv: str | None = None

    def for_algorithm(self, alg: str) -> Key:
        """The key as a jose Key for ``alg``; refuses a key of another type or curve."""
        if _KEY_TYPE.get(alg[:2]) != self.kty or (self.alg is not None and self.alg != alg):
            raise Unauthenticated("The token's algorithm does not match its key.")
        if self.kty == "EC" and self.crv is not None and _CURVE.get(alg) != self.crv:
            raise Unauthenticated("The token's algorithm does not match its key.")
        try:
            return jose_key(self.material, alg)
        except (JOSEError, ValueError, TypeError, KeyError):
            raise Unauthenticated("The token's algorithm does not match its key.") from None


def jose_key(material: Any, alg: str) -> Key:
    """A jose key for ``alg`` built by the cryptography backend (never ``ecdsa`` or ``rsa``)."""
    return _KEY_CLASS[_KEY_TYPE[alg[:2]]](material, alg)


class KeySource(Protocol):
    def find(self, kid: str | None) -> VerificationKey | None: ...

    async def resolve(
        self, kid: str | None, *, http: httpx.AsyncClient | None, now: datetime
    ) -> VerificationKey | None: ...


class StaticKeys:
    """Keys known from configuration; ``kid`` must match exactly (None only for None)."""

    def __init__(self, *keys: VerificationKey) -> None:
        self._keys = {key.kid: key for key in keys}

    def find(self, kid: str | None) -> VerificationKey | None:
        return self._keys.get(kid)

    async def resolve(
        self, kid: str | None, *, http: httpx.AsyncClient | None, now: datetime
    ) -> VerificationKey | None:
        return self.find(kid)


class JwksKeys:
    """An issuer's JSON Web Key Set, fetched with the injected client and cached.

    Refetched when older than ``cache_seconds`` or when a token names a ``kid`` we do not hold
    (key rotation), but never more often than every ``min_refresh_seconds``, so a flood of
    tokens with made-up key ids cannot turn into a flood of requests to the identity provider.
    """

    def __init__(self, url: str, *, cache_seconds: int, min_refresh_seconds: int) -> None:
        self.url = url
        self.cache = timedelta(seconds=cache_seconds)
        self.min_refresh = timedelta(seconds=min_refresh_seconds)
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: datetime | None = None
        self._attempted_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def find(self, kid: str | None) -> VerificationKey | None:
        return self._keys.get(kid) if kid else None

    async def resolve(
        self, kid: str | None, *, http: httpx.AsyncClient | None, now: datetime
    ) -> VerificationKey | None:
        if kid is None:
            return None  # a key set names its keys; a token that does not is not ours to guess
        stale = self._fetched_at is None or now - self._fetched_at >= self.cache
        if (stale or kid not in self._keys) and http is not None:
            await self._refresh(http, now)
        if not self._keys:
            raise ServiceUnavailable("The identity provider's keys could not be fetched.")
        return self._keys.get(kid)

    async def _refresh(self, http: httpx.AsyncClient, now: datetime) -> None:
        async with self._lock:
            if self._attempted_at is not None and now - self._attempted_at < self.min_refresh:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                response = await http.get(
                    self.url, headers={"Accept": "application/json"}, timeout=5.0
                )
                response.raise_for_status()
                keys = parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning(
                    "jwks fetch failed",
                    extra={"event": "jwks.fetch_failed", "error_type": type(exc).__name__},
                )
                return
            self._keys = keys
            self._fetched_at = now
            logger.info("jwks fetched", extra={"event": "jwks.fetched", "count": len(keys)})


def parse_jwks(document: Any) -> dict[str, VerificationKey]:
    """The usable signing keys of a JWKS document, by kid (RSA and EC public keys only)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, VerificationKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, Mapping):
            continue
        kid, kty, alg = entry.get("kid"), entry.get("kty"), entry.get("alg")
        if not isinstance(kid, str) or kty not in ("RSA", "EC"):
            continue
        if entry.get("use") not in (None, "sig") or (
            alg is not None and alg not in EXTERNAL_ALGORITHMS
        ):
            continue
        public = {name: entry[name] for name in _PUBLIC_MEMBERS if name in entry}
        try:
            jose_key(public, alg or ("RS256" if kty == "RSA" else "ES256"))
        except (JOSEError, ValueError, TypeError, KeyError):  # a malformed key: skip it alone
            continue
        keys[kid] = VerificationKey(
            kid=kid, kty=kty, material=public, alg=alg, crv=entry.get("crv")
        )
    return keys


def static_key(pem: str, *, kid: str | None, setting: str) -> VerificationKey:
    """A configured PEM public key; refuses anything but an RSA or EC public key."""
    try:
        loaded = load_pem_public_key(pem.strip().encode())
    except ValueError:
        raise ConfigError(f"{setting} is not a PEM public key") from None
    if isinstance(loaded, rsa.RSAPublicKey):
        return VerificationKey(kid=kid, kty="RSA", material=pem.strip())
    if isinstance(loaded, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        crv = curves.get(loaded.curve.name)
        if crv is None:
            raise ConfigError(f"{setting} uses an unsupported curve")
        return VerificationKey(kid=kid, kty="EC", material=pem.strip(), crv=crv)
    raise ConfigError(f"{setting} must be an RSA or EC public key")


@dataclass(frozen=True)
class TrustedIssuer:
    name: Literal["own", "staff_idp", "mobile"]
    issuer: str
    audiences: frozenset[str]
    algorithms: frozenset[str]
    keys: KeySource


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
        self.issuers: dict[str, TrustedIssuer] = {}
        own_audiences = {SUBJECT_AUDIENCE}
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

    # -- verifying -------------------------------------------------------------------------

    def verify(self, token: str, *, now: datetime) -> Principal:
        """Verify with the keys already known (no fetching); see ``authenticate``."""
        parsed = self._parse(token)
        key = parsed.issuer.keys.find(parsed.kid)
        if key is None:
            raise Unauthenticated("The token's key is unknown.")
        return self._finish(parsed, key, now).principal

    async def authenticate(
        self, token: str, *, now: datetime, http: httpx.AsyncClient | None = None
    ) -> Authentication:
        """Verify a bearer token, fetching an issuer's key set when needed (rotation)."""
        parsed = self._parse(token)
        key = await parsed.issuer.keys.resolve(parsed.kid, http=http, now=now)
        if key is None:
            raise Unauthenticated("The token's key is unknown.")
        return self._finish(parsed, key, now)

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

    def _finish(self, parsed: _Parsed, key: VerificationKey, now: datetime) -> Authentication:
        issuer = parsed.issuer
        try:
            claims = jwt.decode(
                parsed.token,
                key.for_algorithm(parsed.alg),
                algorithms=[parsed.alg],
                issuer=issuer.issuer,
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_at_hash": False,
                },
            )
        except JOSEError:
            raise Unauthenticated("The token is not valid.") from None
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or not issuer.audiences.intersection(audiences):
            raise Unauthenticated("The token's audience is not accepted.")
        expires_at = _check_times(claims, now, self._leeway)
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
            return Authentication(
                Principal(
                    kind="subject",
                    subject=sub,
                    identifier_kinds=tuple(kinds),
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


def _check_times(claims: dict[str, Any], now: datetime, leeway: int) -> datetime:
    """Check exp (required), nbf and iat against the service clock; returns the expiry."""
    current = now.timestamp()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Unauthenticated("The token has no expiry.")
    if current > exp + leeway:
        raise Unauthenticated("The token has expired.")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise Unauthenticated("The token is not valid.")
        if current + leeway < value:
            raise Unauthenticated("The token is not valid yet.")
    return datetime.fromtimestamp(exp, UTC)
