"""The permissions matrix: every endpoint × every caller (method, path, role → expected status).

Callers: no token, a data subject's token, each staff role, and an internal service. Rows for
endpoints of the API contract that this branch does not build are kept here too: each runs as
soon as its route exists in the app (until then it is skipped), so the matrix grows with the code.
Expected statuses are exact where the answer is known; ``PASSES`` means "gets past
authorization" (anything but 401 or 403), for rows whose success depends on data.

Unknown ids are random, so an allowed caller gets 404 (or 422 for an empty body) while a
refused caller gets 401/403 before anything is looked up: authorization never reveals whether
a record exists.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from starlette.routing import Match

from app.clock import FrozenClock
from app.deps import (
    CurrentSubject,
    OfficerPrincipal,
    PrincipalDep,
    ServicePrincipal,
    StaffPrincipal,
    require_roles,
)
from app.security import Principal, Role, TokenService

ROLES = ("none", "subject", "support_agent", "privacy_officer", "admin", "service")
PASSES = -1  # any status but 401/403

SUBJECT = frozenset({"subject"})
STAFF = frozenset({"support_agent", "privacy_officer", "admin"})
OFFICER = frozenset({"privacy_officer", "admin"})
DECIDER = frozenset({"privacy_officer"})  # decisions on the merits: not even admin (four-eyes)
ADMIN = frozenset({"admin"})
SERVICE = frozenset({"service"})
ANYONE = frozenset(ROLES) - {"none"}


def public(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


def only(allowed: frozenset[str], status: int = PASSES) -> dict[str, int]:
    """``status`` for the allowed callers; 401 without a token; 403 for everyone else."""
    return {role: status if role in allowed else (401 if role == "none" else 403) for role in ROLES}


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # "{id}" stands for a random UUID (nothing exists under it)
    expected: dict[str, int]
    body: Callable[[str], Any] | None = None  # role -> JSON body
    note: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # Endpoints authenticated by a signature, not a bearer token, answer 401 with their own code.
    unauthenticated_code: str = "unauthenticated"


def _verification_body(role: str) -> dict[str, str]:
    # A different number per caller: the per-destination cooldown is not what this tests.
    return {"channel": "sms", "destination": f"010-7{ROLES.index(role)}00-0000"}


def empty(role: str) -> dict[str, Any]:
    return {}


MATRIX: list[Row] = [
    # -- operations (issue 1) ----------------------------------------------------------------
    Row("GET", "/healthz", public(200)),
    Row("GET", "/readyz", public(200)),
    Row("GET", "/metrics", public(200), note="scrape from the internal network only"),
    # -- identity verification (issue 3) -----------------------------------------------------
    Row("POST", "/v1/verifications", public(202), body=_verification_body),
    Row(
        "POST",
        "/v1/verifications/{id}/confirm",
        public(404),
        body=lambda role: {"code": "123456"},
    ),
    Row("GET", "/v1/me", only(ANYONE, 200)),
    # -- data subject (issue 4, contract) ----------------------------------------------------
    Row("POST", "/v1/requests", only(SUBJECT), body=empty),
    Row("GET", "/v1/requests", only(SUBJECT)),
    Row("GET", "/v1/requests/{id}", only(SUBJECT)),
    Row("POST", "/v1/requests/{id}/withdraw", only(SUBJECT), body=empty),
    Row("POST", "/v1/requests/{id}/objection", only(SUBJECT), body=empty),
    Row("GET", "/v1/requests/{id}/report", only(SUBJECT), note="issue 5"),
    Row("GET", "/v1/refusal-grounds", public(200)),
    # -- support center (issue 4, contract) --------------------------------------------------
    Row("GET", "/v1/staff/requests", only(STAFF)),
    Row("GET", "/v1/staff/requests/{id}", only(STAFF)),
    Row("POST", "/v1/staff/requests", only(STAFF), body=empty),
    Row("POST", "/v1/staff/requests/{id}/approve", only(STAFF), body=empty),
    Row("POST", "/v1/staff/requests/{id}/review", only(STAFF), body=empty),
    Row("POST", "/v1/staff/requests/{id}/propose-refusal", only(STAFF), body=empty),
    Row("POST", "/v1/staff/requests/{id}/refuse", only(DECIDER), body=empty),
    Row("POST", "/v1/staff/requests/{id}/extend", only(DECIDER), body=empty),
    Row("POST", "/v1/staff/requests/{id}/resume", only(DECIDER), body=empty),
    Row("POST", "/v1/staff/requests/{id}/withdraw", only(STAFF), body=empty),
    Row("POST", "/v1/staff/requests/{id}/retry-fulfilment", only(OFFICER), body=empty),
    Row("GET", "/v1/staff/objections", only(STAFF)),
    Row("POST", "/v1/staff/objections/{id}/decide", only(DECIDER), body=empty),
    Row("GET", "/v1/audit", only(OFFICER)),
    # -- processors (issue 6, contract) ------------------------------------------------------
    Row("GET", "/v1/processors", only(OFFICER)),
    Row("POST", "/v1/processors", only(OFFICER), body=empty),
    Row("GET", "/v1/processors/hct", only(OFFICER)),
    Row("PATCH", "/v1/processors/hct", only(OFFICER), body=empty),
    Row("POST", "/v1/processors/hct/rotate-secret", only(OFFICER), body=empty),
    Row("GET", "/v1/processors/hct/deliveries", only(OFFICER)),
    Row("POST", "/v1/deliveries/{id}/replay", only(OFFICER), body=empty),
    Row("POST", "/v1/processors/hct/deliveries/replay", only(OFFICER), body=empty),
    Row("GET", "/v1/deliveries", only(OFFICER)),
    Row("GET", "/v1/deliveries/awaiting-acknowledgement", only(OFFICER)),
    Row("GET", "/v1/deliveries/{id}", only(OFFICER)),
    # Partners sign with their webhook secret; a bearer token of ours counts for nothing.
    Row(
        "POST",
        "/v1/partner/acknowledgements",
        public(401),
        body=empty,
        unauthenticated_code="signature-invalid",
    ),
    # -- internal systems (contract) ---------------------------------------------------------
    Row("POST", "/v1/usage-checks", only(SERVICE), body=empty),
    # -- the dependency aliases themselves (probe routes mounted by this test) ---------------
    Row("GET", "/_probe/principal", only(ANYONE, 200)),
    Row("GET", "/_probe/subject", only(SUBJECT, 200)),
    Row("GET", "/_probe/staff", only(STAFF, 200)),
    Row("GET", "/_probe/officer", only(OFFICER, 200)),
    Row("GET", "/_probe/admin", only(ADMIN, 200)),
    Row("GET", "/_probe/service", only(SERVICE, 200)),
]

probe = APIRouter(prefix="/_probe")


@probe.get("/principal")
async def _any(principal: PrincipalDep) -> dict[str, str]:
    return {"kind": principal.kind}


@probe.get("/subject")
async def _subject(principal: CurrentSubject) -> dict[str, str]:
    return {"kind": principal.kind}


@probe.get("/staff")
async def _staff(principal: StaffPrincipal) -> dict[str, str]:
    return {"kind": principal.kind}


@probe.get("/officer")
async def _officer(principal: OfficerPrincipal) -> dict[str, str]:
    return {"kind": principal.kind}


@probe.get("/admin")
async def _admin(principal: Principal = Depends(require_roles(Role.ADMIN))) -> dict[str, str]:
    return {"kind": principal.kind}


@probe.get("/service")
async def _service(principal: ServicePrincipal) -> dict[str, str]:
    return {"kind": principal.kind}


@pytest.fixture
def matrix_app(app: FastAPI) -> FastAPI:
    app.include_router(probe)
    return app


@pytest.fixture
def headers_for(tokens: TokenService, clock: FrozenClock, staff_headers: Any) -> Any:
    def make(role: str) -> dict[str, str]:
        if role == "none":
            return {}
        if role == "subject":
            token = tokens.issue_subject_token(
                blind_index=secrets.token_hex(32),
                identifier_kinds=["phone"],
                now=clock.now(),
                ttl=timedelta(minutes=30),
            )
            return {"Authorization": f"Bearer {token}"}
        headers: dict[str, str] = staff_headers(role, sub=f"{role}-1")
        return headers

    return make


def route_exists(app: FastAPI, method: str, path: str) -> bool:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def concrete(path: str) -> str:
    return path.replace("{id}", str(uuid.uuid4()))


@pytest.mark.parametrize(
    "row", [pytest.param(row, id=f"{row.method} {row.path}") for row in MATRIX]
)
async def test_permission_matrix(
    row: Row, matrix_app: FastAPI, client: httpx.AsyncClient, headers_for: Any
) -> None:
    path = concrete(row.path)
    if not route_exists(matrix_app, row.method, path):
        pytest.skip(f"{row.method} {row.path} is in the contract but not built on this branch")
    wrong: dict[str, str] = {}
    for role in ROLES:
        response = await client.request(
            row.method,
            path,
            headers={**headers_for(role), **row.headers},
            json=row.body(role) if row.body else None,
        )
        status, expected = response.status_code, row.expected[role]
        if expected == PASSES and status in (401, 403):
            wrong[role] = f"got {status}, expected to pass authorization"
        elif expected != PASSES and status != expected:
            wrong[role] = f"got {status}, expected {expected}"
        elif status == 401 and (
            response.json()["code"] != row.unauthenticated_code
            or (
                row.unauthenticated_code == "unauthenticated"
                and not response.headers["www-authenticate"].startswith("Bearer")
            )
        ):
            wrong[role] = "401 without the unauthenticated problem and WWW-Authenticate"
        elif status == 403 and response.json()["code"] != "forbidden":
            wrong[role] = "403 without the forbidden problem"
    assert wrong == {}


def test_every_route_of_the_app_is_in_the_matrix(matrix_app: FastAPI) -> None:
    """A new endpoint must get a row: the matrix is the permissions contract."""
    rows = [(row.method, concrete(row.path)) for row in MATRIX]
    missing = []
    for template, operations in matrix_app.openapi()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
        for method in operations:
            if not any(m == method.upper() and pattern.match(p) for m, p in rows):
                missing.append(f"{method.upper()} {template}")
    assert missing == []
