"""Token verification: our own tokens, the identity provider's (JWKS served on 127.0.0.1), the
mobile app's, and every forgery we know of."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jose import jwk, jwt

from app.clock import FrozenClock
from app.config import KEY_FIELDS, ConfigError, Settings, ensure_keys, new_key
from app.db import Database
from app.errors import ServiceUnavailable, Unauthenticated
from app.keys import JwksKeys, parse_jwks, static_key
from app.security import STAFF_AUDIENCE, SUBJECT_AUDIENCE, Principal, TokenService
from app.subjects import identifiers
from tests.support.servers import Received, RecordingServer, Reply

IDP_ISSUER = "https://login.qxpress.example/realms/staff"
IDP_AUDIENCE = "qx-dsr"
APP_ISSUER = "https://app.qxpress.example"
APP_AUDIENCE = "qx-dsr-mobile"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private_pem: str
    public_pem: str
    public_jwk: dict[str, Any] = field(default_factory=dict)

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        header = {"kid": self.kid, **headers}
        return jwt.encode(claims, self.private_pem, algorithm=self.alg, headers=header)


def make_key(kind: str, kid: str) -> SigningKey:
    if kind == "rsa":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        alg = "RS256"
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        alg = "ES256"
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    public_jwk = {**jwk.construct(public_pem, alg).to_dict(), "kid": kid, "use": "sig"}
    return SigningKey(kid, alg, private_pem, public_pem, public_jwk)


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return make_key("rsa", "idp-rsa-1")


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return make_key("ec", "idp-ec-1")


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    return make_key("rsa", "idp-rsa-1")  # same kid as the real key, different key


class Jwks:
    """What the identity provider's JWKS endpoint serves right now."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.down = False

    def __call__(self, received: Received) -> Reply:
        if self.down:
            return Reply(503, "down")
        return Reply(200, {"keys": [key.public_jwk for key in self.keys]})


@pytest.fixture
def jwks(rsa_key: SigningKey, ec_key: SigningKey) -> Jwks:
    return Jwks(rsa_key, ec_key)


@pytest.fixture
def idp(jwks: Jwks) -> Iterator[RecordingServer]:
    with RecordingServer(responder=jwks) as server:
        yield server


@pytest.fixture
def settings_overrides(idp: RecordingServer) -> dict[str, Any]:
    return {
        "staff_idp_issuer": IDP_ISSUER,
        "staff_idp_audience": IDP_AUDIENCE,
        "staff_idp_jwks_url": f"{idp.url}/jwks",
    }


@pytest.fixture
def token_settings(
    keys: dict[str, str], tmp_path: Path, settings_overrides: dict[str, Any]
) -> Settings:
    """Settings for tests of TokenService alone: no database, so nothing to clean up."""
    return Settings(env="test", data_dir=tmp_path / "data", **keys, **settings_overrides)


@pytest.fixture
def tokens(token_settings: Settings) -> TokenService:
    return TokenService(token_settings)


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient() as client:
        yield client


def staff_claims(clock: FrozenClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    claims = {
        "iss": IDP_ISSUER,
        "aud": IDP_AUDIENCE,
        "sub": "agent-kim",
        "roles": ["support_agent"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j-1",
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token built by hand, signed with HMAC-SHA256 over ``secret`` (or unsigned)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def principal_of(
    tokens: TokenService, token: str, clock: FrozenClock, http: httpx.AsyncClient
) -> Principal:
    return (await tokens.authenticate(token, now=clock.now(), http=http)).principal


# -- what must pass --------------------------------------------------------------------------


async def test_idp_staff_tokens_rs256_and_es256_from_jwks(
    tokens: TokenService,
    clock: FrozenClock,
    http: httpx.AsyncClient,
    rsa_key: SigningKey,
    ec_key: SigningKey,
    idp: RecordingServer,
) -> None:
    principal = await principal_of(
        tokens, rsa_key.sign(staff_claims(clock, roles=["privacy_officer", "other"])), clock, http
    )
    assert principal.kind == "staff" and principal.subject == "agent-kim"
    assert principal.roles == {"privacy_officer"}
    assert principal.issuer == IDP_ISSUER and principal.token_id == "j-1"
    service = await principal_of(
        tokens, ec_key.sign(staff_claims(clock, sub="crm", roles="service")), clock, http
    )
    assert service.kind == "service" and service.roles == {"service"}
    assert len(idp.requests("/jwks")) == 1  # cached


async def test_role_map_translates_the_idp_group_names(
    token_settings: Settings, clock: FrozenClock, http: httpx.AsyncClient, rsa_key: SigningKey
) -> None:
    tokens = TokenService(
        token_settings.model_copy(
            update={
                "staff_idp_roles_claim": "groups",
                "staff_idp_role_map": {"dsr-agents": "support_agent", "dsr-dpo": "privacy_officer"},
            }
        )
    )
    token = rsa_key.sign(staff_claims(clock, roles=None, groups=["dsr-dpo", "admin"]))
    principal = await principal_of(tokens, token, clock, http)
    assert principal.roles == {"privacy_officer"}  # "admin" is not mapped, so not trusted
    with pytest.raises(ConfigError, match="ROLE_MAP"):
        TokenService(token_settings.model_copy(update={"staff_idp_role_map": {"x": "root"}}))


async def test_static_public_key_with_key_id(
    token_settings: Settings, clock: FrozenClock, ec_key: SigningKey, rsa_key: SigningKey
) -> None:
    tokens = TokenService(
        token_settings.model_copy(
            update={
                "staff_idp_jwks_url": None,
                "staff_idp_public_key": ec_key.public_pem,
                "staff_idp_key_id": ec_key.kid,
            }
        )
    )
    assert tokens.verify(ec_key.sign(staff_claims(clock)), now=clock.now()).roles == {
        "support_agent"
    }
    for token in (
        ec_key.sign(staff_claims(clock), kid="idp-ec-2"),  # unknown kid
        rsa_key.sign(staff_claims(clock), kid=ec_key.kid),  # another key under its kid
    ):
        with pytest.raises(Unauthenticated):
            tokens.verify(token, now=clock.now())


async def test_own_tokens_keep_working_in_dev_and_test(
    tokens: TokenService, clock: FrozenClock
) -> None:
    staff = tokens.issue_staff_token(
        sub="agent-1", roles=["admin"], now=clock.now(), ttl=timedelta(hours=1)
    )
    assert tokens.verify(staff, now=clock.now()).roles == {"admin"}
    index = "a" * 64
    subject = tokens.issue_subject_token(
        blind_index=index, identifier_kinds=["phone"], now=clock.now(), ttl=timedelta(minutes=30)
    )
    principal = tokens.verify(subject, now=clock.now())
    assert principal.kind == "subject" and principal.subject == index
    assert principal.amr == ("otp",) and principal.identifier_kinds == ("phone",)


async def test_prod_accepts_only_subject_tokens_of_our_own(
    token_settings: Settings, clock: FrozenClock
) -> None:
    prod = token_settings.model_copy(
        update={"env": "prod", "staff_idp_jwks_url": "https://login.qxpress.example/jwks"}
    )
    dev_tokens, prod_tokens = TokenService(token_settings), TokenService(prod)
    staff = dev_tokens.issue_staff_token(
        sub="agent-1", roles=["admin"], now=clock.now(), ttl=timedelta(hours=1)
    )
    with pytest.raises(Unauthenticated, match="audience"):
        prod_tokens.verify(staff, now=clock.now())
    subject = dev_tokens.issue_subject_token(
        blind_index="b" * 64, identifier_kinds=["email"], now=clock.now(), ttl=timedelta(minutes=5)
    )
    assert prod_tokens.verify(subject, now=clock.now()).kind == "subject"


async def test_leeway_is_thirty_seconds(tokens: TokenService, clock: FrozenClock) -> None:
    token = tokens.issue_subject_token(
        blind_index="c" * 64, identifier_kinds=["phone"], now=clock.now(), ttl=timedelta(minutes=30)
    )
    assert tokens.verify(token, now=clock.now() + timedelta(minutes=30, seconds=30)).subject
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(token, now=clock.now() + timedelta(minutes=30, seconds=31))


async def test_a_token_verified_a_moment_ago_still_expires_on_the_service_clock(
    tokens: TokenService, clock: FrozenClock, http: httpx.AsyncClient
) -> None:
    # Verified tokens are kept a minute (a service token is sent with every usage check); the
    # times are checked on every call all the same.
    token = tokens.issue_subject_token(
        blind_index="d" * 64, identifier_kinds=["phone"], now=clock.now(), ttl=timedelta(minutes=5)
    )
    first = await tokens.authenticate(token, now=clock.now(), http=http)
    again = await tokens.authenticate(token, now=clock.now() + timedelta(minutes=5), http=http)
    assert again.principal == first.principal
    with pytest.raises(Unauthenticated, match="expired"):
        await tokens.authenticate(token, now=clock.now() + timedelta(minutes=6), http=http)
    # Not before its issue time either, should the clock be set back.
    with pytest.raises(Unauthenticated, match="not valid yet"):
        await tokens.authenticate(token, now=clock.now() - timedelta(minutes=1), http=http)


async def test_a_kept_token_is_that_exact_token(
    tokens: TokenService, clock: FrozenClock, http: httpx.AsyncClient
) -> None:
    token = tokens.issue_subject_token(
        blind_index="e" * 64, identifier_kinds=["phone"], now=clock.now(), ttl=timedelta(minutes=5)
    )
    await tokens.authenticate(token, now=clock.now(), http=http)
    header, claims, signature = token.split(".")
    tampered = f"{header}.{claims}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(tampered, now=clock.now(), http=http)


# -- forgeries ---------------------------------------------------------------------------------


@dataclass
class Forger:
    """Everything a forgery is built from: the real keys, an attacker's key, the clock."""

    clock: FrozenClock
    rsa: SigningKey
    ec: SigningKey
    attacker: SigningKey
    own_secret: bytes

    @property
    def now(self) -> int:
        return int(self.clock.now().timestamp())

    @property
    def good(self) -> dict[str, Any]:
        return staff_claims(self.clock)

    @property
    def own_staff(self) -> dict[str, Any]:
        return {**self.good, "iss": "qx-dsr", "aud": STAFF_AUDIENCE}

    @property
    def own_subject(self) -> dict[str, Any]:
        return {
            "iss": "qx-dsr",
            "aud": SUBJECT_AUDIENCE,
            "sub": "d" * 64,
            "idk": ["phone"],
            "amr": ["otp"],
            "iat": self.now,
            "exp": self.now + 600,
        }

    def own(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, self.own_secret, algorithm="HS256", headers=headers)

    def tampered(self, part: str) -> str:
        head, payload, signature = self.rsa.sign(self.good).split(".")
        if part == "payload":
            payload = b64(json.dumps({**self.good, "roles": ["admin"]}).encode())
        elif part == "signature":
            signature = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
        else:
            signature = ""
        return f"{head}.{payload}.{signature}"


OWN_KID = "dsr-dev-1"
FORGERIES: dict[str, Callable[[Forger], str]] = {
    "alg none (idp)": lambda f: forge({"alg": "none", "kid": f.rsa.kid}, f.good, None),
    "alg None (own)": lambda f: forge({"alg": "None", "kid": OWN_KID}, f.own_staff, None),
    "alg NONE, subject": lambda f: forge({"alg": "NONE"}, f.own_subject, None),
    "HS256 with the RSA public key": lambda f: forge(
        {"alg": "HS256", "kid": f.rsa.kid}, f.good, f.rsa.public_pem.encode()
    ),
    "HS256 with the EC public key": lambda f: forge(
        {"alg": "HS256", "kid": f.ec.kid}, f.good, f.ec.public_pem.encode()
    ),
    "HS256 with the JWK as secret": lambda f: forge(
        {"alg": "HS256", "kid": f.rsa.kid}, f.good, json.dumps(f.rsa.public_jwk).encode()
    ),
    "HS256 own issuer, public key as secret": lambda f: forge(
        {"alg": "HS256", "kid": OWN_KID}, f.own_staff, f.rsa.public_pem.encode()
    ),
    "HS512 with our own secret": lambda f: jwt.encode(
        f.own_staff, f.own_secret, algorithm="HS512", headers={"kid": OWN_KID}
    ),
    "RS256 claiming our issuer": lambda f: f.attacker.sign(f.own_staff, kid=OWN_KID),
    "ES256 header on the RSA key's kid": lambda f: f.ec.sign(f.good, kid=f.rsa.kid),
    "attacker key under the real kid": lambda f: f.attacker.sign(f.good),
    "unknown kid": lambda f: f.attacker.sign(f.good, kid="idp-rsa-9"),
    "no kid for a JWKS issuer": lambda f: jwt.encode(f.good, f.rsa.private_pem, algorithm="RS256"),
    "own token, unknown kid": lambda f: f.own(f.own_staff, kid="dsr-dev-2"),
    "own token, no kid": lambda f: f.own(f.own_staff),
    "wrong issuer": lambda f: f.rsa.sign({**f.good, "iss": "https://evil.example"}),
    "no issuer": lambda f: f.rsa.sign({k: v for k, v in f.good.items() if k != "iss"}),
    "wrong audience": lambda f: f.rsa.sign({**f.good, "aud": "someone-else"}),
    "audience list without ours": lambda f: f.rsa.sign({**f.good, "aud": ["a", "b"]}),
    "own token with the IdP audience": lambda f: f.own(
        {**f.own_staff, "aud": IDP_AUDIENCE}, kid=OWN_KID
    ),
    "expired": lambda f: f.rsa.sign({**f.good, "exp": f.now - 31}),
    "no expiry": lambda f: f.rsa.sign({k: v for k, v in f.good.items() if k != "exp"}),
    "not yet valid": lambda f: f.rsa.sign({**f.good, "nbf": f.now + 120}),
    "issued in the future": lambda f: f.rsa.sign({**f.good, "iat": f.now + 120}),
    "exp as a string": lambda f: f.rsa.sign({**f.good, "exp": str(f.now + 600)}),
    "tampered payload": lambda f: f.tampered("payload"),
    "tampered signature": lambda f: f.tampered("signature"),
    "signature removed": lambda f: f.tampered("removed"),
    "crit header": lambda f: f.rsa.sign(f.good, crit=["exp"]),
    "subject token without identifier kinds": lambda f: f.own(
        {k: v for k, v in f.own_subject.items() if k != "idk"}, kid=OWN_KID
    ),
    "not a JWT": lambda f: "hello",
    "five parts (JWE)": lambda f: "a.b.c.d.e",
    "garbage header": lambda f: "!!!.e30.sig",
    "oversized": lambda f: f.rsa.sign({**f.good, "pad": "x" * 9000}),
}


# Why each forgery must fail: the check that stops it (so a test cannot pass for a wrong reason).
REASONS = {
    "alg none (idp)": "algorithm is not accepted",
    "alg None (own)": "algorithm is not accepted",
    "alg NONE, subject": "algorithm is not accepted",
    "HS256 with the RSA public key": "algorithm is not accepted",
    "HS256 with the EC public key": "algorithm is not accepted",
    "HS256 with the JWK as secret": "algorithm is not accepted",
    "HS256 own issuer, public key as secret": "token is not valid",
    "HS512 with our own secret": "algorithm is not accepted",
    "RS256 claiming our issuer": "algorithm is not accepted",
    "ES256 header on the RSA key's kid": "does not match its key",
    "attacker key under the real kid": "token is not valid",
    "unknown kid": "key is unknown",
    "no kid for a JWKS issuer": "key is unknown",
    "own token, unknown kid": "key is unknown",
    "own token, no kid": "key is unknown",
    "wrong issuer": "issuer is not accepted",
    "no issuer": "issuer is not accepted",
    "wrong audience": "audience is not accepted",
    "audience list without ours": "audience is not accepted",
    "own token with the IdP audience": "audience is not accepted",
    "expired": "expired",
    "no expiry": "no expiry",
    "not yet valid": "not valid yet",
    "issued in the future": "not valid yet",
    "exp as a string": "no expiry",
    "tampered payload": "token is not valid",
    "tampered signature": "token is not valid",
    "signature removed": "token is not valid",
    "crit header": "extensions",
    "subject token without identifier kinds": "token is not valid",
    "not a JWT": "malformed",
    "five parts (JWE)": "malformed",
    "garbage header": "malformed",
    "oversized": "malformed",
}


@pytest.fixture
def forger(
    clock: FrozenClock,
    rsa_key: SigningKey,
    ec_key: SigningKey,
    attacker_key: SigningKey,
    token_settings: Settings,
) -> Forger:
    secret = token_settings.key_bytes("token_signing_key")
    return Forger(clock, rsa_key, ec_key, attacker_key, secret)


@pytest.mark.parametrize("name", list(FORGERIES))
async def test_forgery_is_rejected(
    name: str,
    forger: Forger,
    tokens: TokenService,
    clock: FrozenClock,
    http: httpx.AsyncClient,
) -> None:
    with pytest.raises(Unauthenticated, match=REASONS[name]):
        await tokens.authenticate(FORGERIES[name](forger), now=clock.now(), http=http)


async def test_forgeries_get_401_problem_over_http(
    client: httpx.AsyncClient, forger: Forger
) -> None:
    for name, build in FORGERIES.items():
        token = build(forger)
        response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        problem = response.json()
        assert problem["code"] == "unauthenticated", name
        assert token[:40] not in response.text


async def test_the_genuine_token_passes_where_its_forgeries_fail(
    client: httpx.AsyncClient, clock: FrozenClock, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(staff_claims(clock))
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["roles"] == ["support_agent"]


# -- JWKS: rotation, caching, outages --------------------------------------------------------


async def test_jwks_rotation_fetches_the_new_kid_but_not_on_every_unknown_kid(
    tokens: TokenService,
    clock: FrozenClock,
    http: httpx.AsyncClient,
    jwks: Jwks,
    idp: RecordingServer,
    rsa_key: SigningKey,
) -> None:
    assert (await principal_of(tokens, rsa_key.sign(staff_claims(clock)), clock, http)).subject
    assert len(idp.requests("/jwks")) == 1

    rotated = make_key("rsa", "idp-rsa-2")
    jwks.keys = [rotated]  # the IdP rotates: the old key is withdrawn
    clock.advance(timedelta(seconds=61))
    principal = await principal_of(tokens, rotated.sign(staff_claims(clock)), clock, http)
    assert principal.subject == "agent-kim"
    assert len(idp.requests("/jwks")) == 2

    # The old kid is still cached until the set is refreshed; a made-up kid does not refetch
    # within the minimum interval, however many tokens carry one.
    with pytest.raises(Unauthenticated, match="key is unknown"):
        await principal_of(tokens, rsa_key.sign(staff_claims(clock), kid="made-up"), clock, http)
    results = await asyncio.gather(
        *(
            principal_of(tokens, rsa_key.sign(staff_claims(clock), kid=f"x{n}"), clock, http)
            for n in range(10)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(result, Unauthenticated) for result in results)
    assert len(idp.requests("/jwks")) == 2

    clock.advance(timedelta(seconds=61))
    with pytest.raises(Unauthenticated):
        await principal_of(tokens, rsa_key.sign(staff_claims(clock), kid="made-up"), clock, http)
    assert len(idp.requests("/jwks")) == 3
    # the withdrawn key is gone after that refresh
    with pytest.raises(Unauthenticated, match="key is unknown"):
        await principal_of(tokens, rsa_key.sign(staff_claims(clock)), clock, http)


async def test_jwks_is_refreshed_when_the_cache_ages(
    tokens: TokenService,
    clock: FrozenClock,
    http: httpx.AsyncClient,
    idp: RecordingServer,
    rsa_key: SigningKey,
) -> None:
    await principal_of(tokens, rsa_key.sign(staff_claims(clock)), clock, http)
    clock.advance(timedelta(minutes=30))
    await principal_of(tokens, rsa_key.sign(staff_claims(clock)), clock, http)
    assert len(idp.requests("/jwks")) == 1
    clock.advance(timedelta(minutes=31))
    await principal_of(tokens, rsa_key.sign(staff_claims(clock)), clock, http)
    assert len(idp.requests("/jwks")) == 2


async def test_idp_down_then_up(
    tokens: TokenService,
    clock: FrozenClock,
    http: httpx.AsyncClient,
    jwks: Jwks,
    idp: RecordingServer,
    rsa_key: SigningKey,
) -> None:
    jwks.down = True
    with pytest.raises(ServiceUnavailable):
        await principal_of(tokens, rsa_key.sign(staff_claims(clock)), clock, http)
    jwks.down = False
    clock.advance(timedelta(seconds=61))
    assert (await principal_of(tokens, rsa_key.sign(staff_claims(clock)), clock, http)).subject
    # Once keys are held, an outage at refresh time keeps using them.
    jwks.down = True
    clock.advance(timedelta(hours=2))
    assert (await principal_of(tokens, rsa_key.sign(staff_claims(clock)), clock, http)).subject
    assert len(idp.requests("/jwks")) == 3


def test_jwks_ignores_keys_it_must_not_use(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    from app.keys import parse_jwks

    document = {
        "keys": [
            rsa_key.public_jwk,
            {**ec_key.public_jwk, "use": "enc"},
            {"kty": "oct", "kid": "hmac", "k": b64(b"secret" * 6)},
            {**rsa_key.public_jwk, "kid": "hs", "alg": "HS256"},
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
            "nonsense",
        ]
    }
    assert set(parse_jwks(document)) == {rsa_key.kid}
    with pytest.raises(ValueError):
        parse_jwks({"nope": []})
    assert JwksKeys("http://x", cache_seconds=1, min_refresh_seconds=1).find(None) is None


# -- the mobile app's session as a verification ----------------------------------------------


def mobile_settings(settings: Settings, key: SigningKey) -> Settings:
    return settings.model_copy(
        update={
            "mobile_tokens_enabled": True,
            "mobile_token_issuer": APP_ISSUER,
            "mobile_token_audience": APP_AUDIENCE,
            "mobile_public_key": key.public_pem,
            "mobile_key_id": key.kid,
        }
    )


def mobile_claims(clock: FrozenClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    claims = {
        "iss": APP_ISSUER,
        "aud": APP_AUDIENCE,
        "sub": "app-user-77",
        "phone_number": "+82 10-4821-7395",
        "phone_number_verified": True,
        "iat": now,
        "exp": now + 900,
    }
    claims.update(changes)
    return claims


async def test_mobile_tokens_are_refused_unless_enabled(
    tokens: TokenService, clock: FrozenClock, ec_key: SigningKey
) -> None:
    with pytest.raises(Unauthenticated, match="issuer"):
        tokens.verify(ec_key.sign(mobile_claims(clock)), now=clock.now())


async def test_mobile_token_with_verified_phone_counts_as_otp(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    clock: FrozenClock,
    ec_key: SigningKey,
    db: Database,
) -> None:
    app.state.tokens = TokenService(mobile_settings(settings, ec_key))
    token = ec_key.sign(mobile_claims(clock))
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["kind"] == "subject"
    assert response.json()["amr"] == ["mobile_app"]
    index = app.state.crypto.blind_index("phone", "+821048217395")
    principal = app.state.tokens.verify(token, now=clock.now())
    assert principal.subject == index and principal.identifier_kinds == ("phone",)
    async with db.sessionmaker() as session:
        remembered = await identifiers.find_identifier(session, blind_index=index)
    assert remembered is not None
    assert identifiers.reveal(app.state.crypto, remembered) == "+821048217395"


@pytest.mark.parametrize(
    "changes",
    [
        {"phone_number_verified": False},
        {"phone_number_verified": "true"},
        {"phone_number_verified": None},
        {"phone_number": None},
        {"phone_number": "12345"},
        {"aud": IDP_AUDIENCE},
    ],
)
async def test_mobile_token_without_a_verified_phone_is_refused(
    token_settings: Settings, clock: FrozenClock, ec_key: SigningKey, changes: dict[str, Any]
) -> None:
    tokens = TokenService(mobile_settings(token_settings, ec_key))
    claims = {k: v for k, v in mobile_claims(clock, **changes).items() if v is not None}
    with pytest.raises(Unauthenticated):
        tokens.verify(ec_key.sign(claims), now=clock.now())


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"staff_idp_algorithms": ["RS256", "HS256"]}, "ALGORITHMS"),
        ({"staff_idp_algorithms": ["none"]}, "ALGORITHMS"),
        ({"staff_idp_public_key": "-----BEGIN PUBLIC KEY-----"}, "exactly one"),
        ({"staff_idp_audience": None}, "AUDIENCE"),
        ({"staff_idp_jwks_url": None, "staff_idp_public_key": "not a key"}, "PEM"),
        ({"mobile_tokens_enabled": True}, "MOBILE_TOKEN_ISSUER"),
    ],
)
def test_unsafe_issuer_settings_are_refused(
    token_settings: Settings, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        TokenService(token_settings.model_copy(update=changes))


def test_private_key_pem_is_not_a_public_key(token_settings: Settings, rsa_key: SigningKey) -> None:
    with pytest.raises(ConfigError, match="PEM public key"):
        TokenService(
            token_settings.model_copy(
                update={"staff_idp_jwks_url": None, "staff_idp_public_key": rsa_key.private_pem}
            )
        )


def test_prod_needs_the_identity_provider_over_https(token_settings: Settings) -> None:
    from app.config import check_production

    base = {
        "env": "prod",
        "database_url": "postgresql://dsr@db.internal/dsr",
        "sms_gateway_url": "https://sms.internal",
        "email_gateway_url": "https://mail.internal",
    }
    with pytest.raises(ConfigError, match="JWKS_URL must be https"):
        check_production(token_settings.model_copy(update=base))
    bare = {
        **base,
        "staff_idp_issuer": None,
        "staff_idp_audience": None,
        "staff_idp_jwks_url": None,
    }
    with pytest.raises(ConfigError, match="DSR_STAFF_IDP_ISSUER"):
        check_production(token_settings.model_copy(update=bare))
    check_production(
        token_settings.model_copy(update={**base, "staff_idp_jwks_url": "https://idp/jwks"})
    )


# -- dsr token ---------------------------------------------------------------------------------


def run_cli(
    tmp_path: Path, *args: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")} | {
        "DSR_ENV": "dev",
        "DSR_DATA_DIR": str(tmp_path),
        **(extra or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "token", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dsr_token_prints_a_dev_staff_token(tmp_path: Path) -> None:
    ensure_keys(Settings(env="dev", data_dir=tmp_path))  # the keys `dsr serve` made
    result = run_cli(
        tmp_path, "--role", "privacy_officer", "--role", "admin", "--sub", "dpo", "--ttl", "8h"
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    keys = json.loads((tmp_path / "keys.json").read_text())
    tokens = TokenService(Settings(env="dev", data_dir=tmp_path, **keys))
    claims = jwt.get_unverified_claims(token)
    assert claims["exp"] - claims["iat"] == 8 * 3600
    from datetime import UTC, datetime

    principal = tokens.verify(token, now=datetime.fromtimestamp(claims["iat"], UTC))
    assert principal.kind == "staff" and principal.subject == "dpo"
    assert principal.roles == {"privacy_officer", "admin"}


def test_dsr_token_refuses_unknown_roles_and_prod(tmp_path: Path) -> None:
    unknown = run_cli(tmp_path, "--role", "root", "--sub", "x")
    assert unknown.returncode == 2 and "unknown role" in unknown.stderr
    prod_env = {
        "DSR_ENV": "prod",
        "DSR_DATABASE_URL": "postgresql://dsr@db.internal/dsr",
        "DSR_SMS_GATEWAY_URL": "https://sms.internal/send",
        "DSR_EMAIL_GATEWAY_URL": "https://mail.internal/send",
        "DSR_STAFF_IDP_ISSUER": IDP_ISSUER,
        "DSR_STAFF_IDP_AUDIENCE": IDP_AUDIENCE,
        "DSR_STAFF_IDP_JWKS_URL": "https://login.qxpress.example/jwks",
    } | {f"DSR_{name.upper()}": new_key() for name in KEY_FIELDS}
    prod = run_cli(tmp_path, "--role", "admin", "--sub", "x", extra=prod_env)
    assert prod.returncode == 2 and prod.stdout == ""
    assert "identity provider" in prod.stderr


def test_jose_verifies_es256_and_rs256_with_the_cryptography_backend(
    rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    """Not the pure-Python ``ecdsa``/``rsa`` fallbacks python-jose would use without it."""
    from jose import backends
    from jose.backends.cryptography_backend import CryptographyECKey, CryptographyRSAKey

    assert backends.ECKey is CryptographyECKey and backends.RSAKey is CryptographyRSAKey
    cases = (
        (ec_key, CryptographyECKey, ec.EllipticCurvePublicKey),
        (rsa_key, CryptographyRSAKey, rsa.RSAPublicKey),
    )
    for key, jose_class, public_class in cases:
        from_pem = static_key(key.public_pem, kid=key.kid, setting="DSR_TEST_KEY")
        from_jwks = parse_jwks({"keys": [key.public_jwk]})[key.kid]
        for source in (from_pem, from_jwks):
            built = source.for_algorithm(key.alg)
            assert type(built) is jose_class
            assert isinstance(built.prepared_key, public_class)  # type: ignore[attr-defined]
