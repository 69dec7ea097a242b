"""Schemathesis hooks: each operation called as the caller it is for, on records that exist.

Loaded by ``tests/fuzz/contract.py`` (``SCHEMATHESIS_HOOKS=tests.fuzz.hooks``). Tokens are
signed with the running server's key, read from the same ``DSR_*`` environment; the records come
from ``tests/fuzz/seed.py`` (``DSR_FUZZ_SEED``):

- a valid id generated for a path parameter is replaced, most of the time, by a seeded one of its
  kind (the rest still find nothing, which is a case too);
- the seeded requests all belong to one subject, whose token the subject routes under
  ``/v1/requests/{request_id}`` carry; a new request or a list is made by a subject of its own;
- a partner's acknowledgement is signed with a seeded processor's secret, most of the time for a
  notice it was really sent, unless the case leaves out a signature header (a negative case);
- where a valid body needs what a schema cannot say (a real phone number or e-mail address), a
  valid generated body gets one most of the time: a seeded subject's number, so usage checks
  and phone intake find someone.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from standardwebhooks import Webhook

from app.clock import SystemClock
from app.config import Settings
from app.schemas.requests import _FIELDS_OF_TYPE as FIELDS_OF_TYPE
from app.security import TokenService

# Path prefix -> the caller it is for; the first match wins.
CALLERS = (
    ("/v1/usage-checks", "service"),
    ("/v1/staff/", "privacy_officer"),
    ("/v1/audit", "privacy_officer"),
    ("/v1/processors", "privacy_officer"),
    ("/v1/deliveries", "privacy_officer"),
    ("/v1/refusal-grounds", "support_agent"),
    ("/v1/requests/{request_id}", "owner"),
    ("/v1/requests", "subject"),
    ("/v1/me", "subject"),
)
# Path parameter -> the seeded ids that fill it.
SEEDED = {
    "request_id": "requests",
    "objection_id": "objections",
    "delivery_id": "deliveries",
    "verification_id": "verifications",
}
# How often a valid generated value is replaced by a seeded one.
SUBSTITUTE = 0.85
ACKNOWLEDGEMENTS = "/v1/partner/acknowledgements"
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@cache
def seeded() -> dict[str, Any]:
    path = os.environ.get("DSR_FUZZ_SEED")
    if not path:
        return {}
    with open(path, encoding="utf-8") as file:
        return json.load(file)  # type: ignore[no-any-return]


def caller_of(path: str) -> str | None:
    return next((role for prefix, role in CALLERS if path.startswith(prefix)), None)


def token_for(role: str) -> str:
    if role == "owner" and seeded():
        return str(seeded()["subject_token"])
    tokens = TokenService(Settings())
    now, ttl = SystemClock().now(), timedelta(hours=2)
    if role in ("subject", "owner"):
        # Not seeded: a subject nobody verified (refused 401 where a request would be stored).
        return tokens.issue_subject_token(
            blind_index=secrets.token_hex(32), identifier_kinds=["phone"], now=now, ttl=ttl
        )
    return tokens.issue_staff_token(sub=f"fuzz-{role}", roles=[role], now=now, ttl=ttl)


def _cache_key(case: Any, context: Any) -> str:
    return caller_of(case.operation.path) or "none"


_turns = itertools.count()


@schemathesis.auth(cache_by_key=_cache_key)
class BearerTokens:
    def get(self, case: Any, context: Any) -> str | None:
        role = caller_of(case.operation.path)
        return token_for(role) if role else None

    def set(self, case: Any, data: str | None, context: Any) -> None:
        pool = seeded().get("subjects")
        if pool and caller_of(case.operation.path) == "subject":
            # Verified subjects take turns: one who already asked for everything is refused
            # (409) from then on, and rate limits count per subject.
            data = pool[next(_turns) % len(pool)]
        if data is not None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def _negative(case: Any, location: ParameterLocation) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.is_negative_at(location)


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _chance(case: Any, value: Any) -> random.Random:
    # Decided by what was generated: the same case makes the same choice when replayed.
    return random.Random(f"{case.operation.label}|{value!r}")


def _fill_path(case: Any) -> None:
    parameters = case.path_parameters
    if not parameters or _negative(case, ParameterLocation.PATH):
        return
    changed = dict(parameters)
    for name, value in parameters.items():
        pick = _chance(case, value)
        if name in SEEDED and _is_uuid(value):
            kind = "access_requests" if "/report" in case.operation.path else SEEDED[name]
            ids = seeded().get(kind) or []
            if ids and pick.random() < SUBSTITUTE:
                changed[name] = pick.choice(ids)
        elif name == "code" and pick.random() < SUBSTITUTE / 2:
            changed[name] = seeded().get("processor", value)
    if changed != parameters:
        case.path_parameters = changed


def _sign_acknowledgement(case: Any, kwargs: dict[str, Any]) -> None:
    headers = dict(case.headers or {})
    secret = seeded().get("signer_secret")
    present = all(headers.get(name) for name in SIGNATURE_HEADERS)
    if not secret or not present or _negative(case, ParameterLocation.HEADER):
        return  # a case without a signature is one to refuse (401)
    body = case.body
    pick = _chance(case, body)
    known = seeded().get("signer_webhook_ids") or []
    real = isinstance(body, dict) and isinstance(body.get("webhook_id"), str) and known
    if real and not _negative(case, ParameterLocation.BODY) and pick.random() < SUBSTITUTE:
        body = {**body, "webhook_id": pick.choice(known)}
        case.body = body
    if isinstance(body, bytes | str):
        raw = body.encode() if isinstance(body, str) else body
    else:
        raw = json.dumps(body).encode() if body is not None else b""
    msg_id = f"ack_{pick.getrandbits(64):016x}"
    at = datetime.now(UTC)
    headers.update(
        {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, raw.decode("utf-8", "replace")),
        }
    )
    if "webhook-processor" in headers:
        headers["webhook-processor"] = seeded().get("signer", headers["webhook-processor"])
    case.headers = headers
    kwargs["data"] = raw


def _email(pick: random.Random) -> str:
    return f"fuzz{pick.randrange(10_000)}@example.com"


def _fill_identifiers(found: Any, pick: random.Random) -> None:
    if not isinstance(found, dict):
        return
    if not found:
        found["phone"] = ""  # none given: a subject must be named
    if isinstance(found.get("phone"), str) and seeded().get("phones"):
        found["phone"] = pick.choice(seeded()["phones"])
    if isinstance(found.get("email"), str):
        found["email"] = _email(pick)


def _fill_destination(found: Any, pick: random.Random) -> None:
    if isinstance(found, dict) and isinstance(found.get("destination"), str):
        if found.get("channel") == "email":
            found["destination"] = _email(pick)
        elif found.get("channel") == "sms":
            found["destination"] = f"010-7{pick.randrange(1000):03d}-{pick.randrange(10000):04d}"


def _fit_request(found: Any) -> None:
    """Keep only the fields the request's type takes (a schema of all types' fields allows
    them all at once, so most generated requests were refused for that alone)."""
    if isinstance(found, dict) and found.get("type") in FIELDS_OF_TYPE:
        allowed = FIELDS_OF_TYPE[found["type"]] | {"type", "locale"}
        for name in set(found) - allowed:
            del found[name]


def _fill_body(case: Any) -> None:
    body = case.body
    if not isinstance(body, dict) or _negative(case, ParameterLocation.BODY):
        return
    pick = _chance(case, body)
    if pick.random() >= SUBSTITUTE:
        return
    body = json.loads(json.dumps(body))
    path = case.operation.path
    if path == "/v1/verifications":
        _fill_destination(body, pick)
    elif path == "/v1/requests":
        _fit_request(body)
    elif path == "/v1/usage-checks":
        _fill_identifiers(body.get("identifiers"), pick)
    elif path == "/v1/staff/requests":
        _fit_request(body.get("request"))
        _fill_identifiers(body.get("identifiers"), pick)
        _fill_destination(body.get("notify"), pick)
    else:
        return
    case.body = body


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not seeded():
        return
    _fill_path(case)
    _fill_body(case)
    if case.operation.path == ACKNOWLEDGEMENTS:
        _sign_acknowledgement(case, kwargs)
