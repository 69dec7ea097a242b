"""Schemathesis hooks: each operation called with the token of the caller it is for.

Loaded by ``tests/fuzz/contract.py`` (``SCHEMATHESIS_HOOKS=tests.fuzz.hooks``). Tokens are
signed with the running server's key, read from the same ``DSR_*`` environment.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import schemathesis

from app.clock import SystemClock
from app.config import Settings
from app.security import TokenService

# Path prefix -> the caller it is for; the first match wins.
CALLERS = (
    ("/v1/usage-checks", "service"),
    ("/v1/staff/", "privacy_officer"),
    ("/v1/audit", "privacy_officer"),
    ("/v1/processors", "privacy_officer"),
    ("/v1/deliveries", "privacy_officer"),
    ("/v1/refusal-grounds", "support_agent"),
    ("/v1/requests", "subject"),
    ("/v1/me", "subject"),
)


def caller_of(path: str) -> str | None:
    return next((role for prefix, role in CALLERS if path.startswith(prefix)), None)


def token_for(role: str) -> str:
    tokens = TokenService(Settings())
    now, ttl = SystemClock().now(), timedelta(hours=2)
    if role == "subject":
        # A subject of its own for each token: rate limits and duplicates do not pile up.
        return tokens.issue_subject_token(
            blind_index=secrets.token_hex(32), identifier_kinds=["phone"], now=now, ttl=ttl
        )
    return tokens.issue_staff_token(sub=f"fuzz-{role}", roles=[role], now=now, ttl=ttl)


def _cache_key(case: Any, context: Any) -> str:
    return caller_of(case.operation.path) or "none"


@schemathesis.auth(cache_by_key=_cache_key)
class BearerTokens:
    def get(self, case: Any, context: Any) -> str | None:
        role = caller_of(case.operation.path)
        return token_for(role) if role else None

    def set(self, case: Any, data: str | None, context: Any) -> None:
        if data is not None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
