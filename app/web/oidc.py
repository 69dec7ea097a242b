"""The console's sign-in with the company identity provider: OpenID Connect authorization code
with PKCE (RFC 7636), the protocol pieces from ``authlib``, the HTTP through the one injected
client. The ID token is verified in ``app/security.py`` like every other token.

Between the redirect to the provider and its answer, the state, nonce and code verifier wait in
a short-lived cookie, encrypted and bound to its purpose (``seal_flow`` / ``open_flow``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from app.config import Settings
from app.crypto import Crypto, DecryptionError
from app.errors import ServiceUnavailable, Unauthenticated

FLOW_CONTEXT = "console:oidc-flow"
FLOW_SECONDS = 600
DISCOVERY_SECONDS = 3600


@dataclass(frozen=True)
class Flow:
    state: str
    nonce: str
    verifier: str
    redirect_uri: str
    started: float


@dataclass
class Provider:
    """The provider's endpoints from its discovery document, cached for an hour."""

    issuer: str
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    fetched: float = 0.0

    async def load(self, http: httpx.AsyncClient, *, now: datetime) -> Provider:
        if self.token_endpoint and now.timestamp() - self.fetched < DISCOVERY_SECONDS:
            return self
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = await http.get(url, headers={"Accept": "application/json"}, timeout=5.0)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            self.authorization_endpoint = str(document["authorization_endpoint"])
            self.token_endpoint = str(document["token_endpoint"])
        except (httpx.HTTPError, ValueError, KeyError):
            raise ServiceUnavailable("The identity provider cannot be reached.") from None
        self.fetched = now.timestamp()
        return self


def configured(settings: Settings) -> bool:
    return bool(settings.staff_idp_issuer and settings.console_oidc_client_id)


def start(
    provider: Provider, settings: Settings, *, redirect_uri: str, now: datetime
) -> tuple[str, Flow]:
    """The provider's authorization URL for a new sign-in, and the flow to keep until it ends."""
    flow = Flow(
        state=generate_token(32),
        nonce=generate_token(32),
        verifier=generate_token(64),
        redirect_uri=redirect_uri,
        started=now.timestamp(),
    )
    url = prepare_grant_uri(
        provider.authorization_endpoint,
        settings.console_oidc_client_id,
        "code",
        redirect_uri=redirect_uri,
        scope="openid profile email",
        state=flow.state,
        nonce=flow.nonce,
        code_challenge=create_s256_code_challenge(flow.verifier),
        code_challenge_method="S256",
    )
    return url, flow


def seal_flow(crypto: Crypto, flow: Flow) -> str:
    sealed = crypto.encrypt_json(flow.__dict__, context=FLOW_CONTEXT)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def open_flow(crypto: Crypto, value: str | None, *, state: str | None, now: datetime) -> Flow:
    """The flow this browser started, if ``state`` is its own and it is recent."""
    if not value or not state:
        raise Unauthenticated("The sign-in was not started here, or it took too long.")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        flow = Flow(**crypto.decrypt_json(raw, context=FLOW_CONTEXT))
    except (ValueError, TypeError, DecryptionError):
        raise Unauthenticated("The sign-in was not started here, or it took too long.") from None
    if not Crypto.equal(flow.state, state) or now.timestamp() - flow.started > FLOW_SECONDS:
        raise Unauthenticated("The sign-in was not started here, or it took too long.")
    return flow


async def exchange_code(
    provider: Provider, settings: Settings, http: httpx.AsyncClient, *, flow: Flow, code: str
) -> str:
    """Trade the code (with the PKCE verifier) for tokens; returns the ID token."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.redirect_uri,
        "client_id": settings.console_oidc_client_id or "",
        "code_verifier": flow.verifier,
    }
    auth = None
    if settings.console_oidc_client_secret:
        auth = httpx.BasicAuth(
            settings.console_oidc_client_id or "", settings.console_oidc_client_secret
        )
    try:
        response = await http.post(
            provider.token_endpoint,
            data=form,
            headers={"Accept": "application/json"},
            auth=auth or httpx.USE_CLIENT_DEFAULT,
            timeout=10.0,
        )
    except httpx.HTTPError:
        raise ServiceUnavailable("The identity provider cannot be reached.") from None
    if response.status_code != 200:
        raise Unauthenticated("The identity provider refused the sign-in.")
    try:
        token = response.json()["id_token"]
    except (ValueError, KeyError):
        raise Unauthenticated("The identity provider sent no ID token.") from None
    if not isinstance(token, str):
        raise Unauthenticated("The identity provider sent no ID token.")
    return token
