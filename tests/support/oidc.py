"""A small real OpenID Connect provider on 127.0.0.1 for the console's sign-in tests.

Discovery, an authorize endpoint that signs in whoever the test chose and redirects back with a
code, a token endpoint that checks the PKCE verifier (S256) and answers an RS256 ID token, and
its JWKS. Nothing of authlib or of our code is mocked: the app talks to it over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

KID = "test-idp-1"


@dataclass
class Pending:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    claims: dict[str, Any]


@dataclass
class OidcProvider:
    client_id: str = "qx-dsr-console"
    user: dict[str, Any] = field(default_factory=lambda: {"sub": "kim", "roles": ["support_agent"]})
    codes: dict[str, Pending] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    # The tests' frozen clock: the ID token's times must agree with the app's.
    now: Callable[[], float] = time.time
    # Claims to put in the next ID tokens over what the flow gave (a test of a bad token).
    overrides: dict[str, Any] = field(default_factory=dict)
    challenges: list[str] = field(default_factory=list)  # every code_challenge seen

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.jwk = {**jwk.construct(public.decode(), "RS256").to_dict(), "kid": KID, "use": "sig"}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, owner.discovery())
                elif url.path == "/jwks":
                    self._json(200, {"keys": [owner.jwk]})
                elif url.path == "/authorize":
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    location = owner.authorize(query)
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._json(404, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = owner.token(form)
                self._json(status, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "code_challenge_methods_supported": ["S256"],
        }

    def authorize(self, query: dict[str, str]) -> str:
        """Sign in ``self.user`` and send the browser back with a code."""
        assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(24)
        self.challenges.append(query["code_challenge"])
        self.codes[code] = Pending(
            client_id=query["client_id"],
            redirect_uri=query["redirect_uri"],
            challenge=query["code_challenge"],
            nonce=query["nonce"],
            claims=dict(self.user),
        )
        return query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        pending = self.codes.pop(form.get("code", ""), None)
        if pending is None or form.get("redirect_uri") != pending.redirect_uri:
            return 400, {"error": "invalid_grant"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).decode().rstrip("=") != pending.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        now = int(self.now())
        claims = {
            "iss": self.issuer,
            "aud": pending.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": pending.nonce,
            **pending.claims,
            **self.overrides,
        }
        id_token = jwt.encode(claims, self._pem, algorithm="RS256", headers={"kid": KID})
        return 200, {
            "access_token": secrets.token_urlsafe(16),
            "token_type": "Bearer",
            "id_token": id_token,
        }

    def __enter__(self) -> OidcProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
