"""Verification keys of the token issuers: static PEM keys and JWKS documents, cached.

Keys are built by python-jose's cryptography backend only (see ``jose_key``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jose.backends.base import Key

# The cryptography backend, named: python-jose falls back to ``ecdsa``/``rsa`` (pure Python,
# with known timing weaknesses) when it cannot import it; this import fails loudly instead.
from jose.backends.cryptography_backend import (
    CryptographyECKey,
    CryptographyHMACKey,
    CryptographyRSAKey,
)
from jose.exceptions import JOSEError

from app.config import EXTERNAL_ALGORITHMS, ConfigError
from app.errors import ServiceUnavailable, Unauthenticated

logger = logging.getLogger("dsr.security")

_KEY_TYPE = {"HS": "oct", "RS": "RSA", "ES": "EC"}
_KEY_CLASS: dict[str, type[Key]] = {
    "oct": CryptographyHMACKey,
    "RSA": CryptographyRSAKey,
    "EC": CryptographyECKey,
}
_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_PUBLIC_MEMBERS = ("kty", "kid", "alg", "use", "n", "e", "crv", "x", "y")


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
