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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
    query: str = ""  # sent with the path; routes are matched without it
    case: str = ""  # names a second row of the same endpoint (another body or query)


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
    Row("GET", "/v1/staff/requests/{id}/report", only(DECIDER, 404)),
    Row(
        "POST",
        "/v1/staff/requests/{id}/report-handover",
        only(DECIDER, 404),
        body=lambda role: {"method": "counter"},
    ),
    Row("POST", "/v1/staff/requests/{id}/withdraw", only(STAFF), body=empty),
    Row("POST", "/v1/staff/requests/{id}/retry-fulfilment", only(OFFICER), body=empty),
    Row("GET", "/v1/staff/objections", only(STAFF)),
    Row("POST", "/v1/staff/objections/{id}/decide", only(DECIDER), body=empty),
    Row("GET", "/v1/audit", only(OFFICER)),
    # -- support console (issue 15) ----------------------------------------------------------
    Row("POST", "/v1/staff/requests/{id}/take", only(STAFF), body=empty),
    Row("POST", "/v1/staff/requests/{id}/assign", only(OFFICER), body=empty),
    Row("POST", "/v1/staff/requests/{id}/unassign", only(STAFF), body=empty),
    Row("GET", "/v1/staff/requests/{id}/notes", only(STAFF)),
    Row("POST", "/v1/staff/requests/{id}/notes", only(STAFF), body=empty),
    Row("POST", "/v1/staff/requests/bulk", only(STAFF), body=empty, note="assign, spam: officer"),
    Row("GET", "/v1/staff/sla", only(STAFF, 200)),
    Row(
        "POST",
        "/v1/staff/requests/bulk",
        only(OFFICER, 200),
        body=lambda role: {"action": "assign", "ids": [str(uuid.uuid4())], "assignee": "kim"},
        case="assign",
    ),
    Row(
        "POST",
        "/v1/staff/requests/bulk",
        only(OFFICER, 200),
        body=lambda role: {"action": "withdraw_spam", "ids": [str(uuid.uuid4())]},
        case="withdraw_spam",
    ),
    Row(
        "POST",
        "/v1/staff/requests/bulk",
        only(STAFF, 200),
        body=lambda role: {"action": "take", "ids": [str(uuid.uuid4())]},
        case="take",
    ),
    Row("GET", "/v1/staff/export", only(OFFICER), note="identifiers: privacy officer only"),
    Row("GET", "/v1/staff/export", only(OFFICER, 200), query="?from=2026-11-01&to=2026-11-30"),
    Row(
        "GET",
        "/v1/staff/export",
        only(DECIDER, 200),
        query="?from=2026-11-01&to=2026-11-30&personal=true",
        case="personal",
    ),
    Row("GET", "/v1/staff/statistics", only(OFFICER)),
    Row("GET", "/v1/staff/statistics", only(OFFICER, 200), query="?from=2026-11-01&to=2026-11-30"),
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
    # Partners without a webhook: a page reached by the signed link in their e-mail; a bearer
    # token counts for nothing (an unknown link is a 404 page for everyone). Its POST answers
    # pages (CSRF 403, refused links): tests/test_partner_email.py.
    Row("GET", "/partner/", public(200)),
    Row("GET", "/partner/confirm/{id}", public(404)),
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


def row_id(row: Row) -> str:
    return f"{row.method} {row.path}{row.query}" + (f" ({row.case})" if row.case else "")


@pytest.mark.parametrize("row", [pytest.param(row, id=row_id(row)) for row in MATRIX])
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
            path + row.query,
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


# -- the support console's pages (issue 15) ---------------------------------------------------
# The same matrix for /console/: the session cookie of the development sign-in instead of a
# bearer token (``none``: no session). A page answers 401 without a session and 403 for a role
# the page or action is not for, as the API does; both are pages, not problem+json.

CONSOLE_ROLES = ("none", "support_agent", "privacy_officer", "admin")
MONTH = "?from=2026-11-01&to=2026-11-30"


def console_only(allowed: frozenset[str], status: int = PASSES) -> dict[str, int]:
    return {
        role: status if role in allowed else (401 if role == "none" else 403)
        for role in CONSOLE_ROLES
    }


def console_public(status: int) -> dict[str, int]:
    return dict.fromkeys(CONSOLE_ROLES, status)


@dataclass(frozen=True)
class PageRow:
    method: str
    path: str  # "{id}" stands for a random UUID
    expected: dict[str, int]
    form: dict[str, str] = field(default_factory=dict)
    query: str = ""


REQUEST_ACTIONS = {
    "take": STAFF,
    "unassign": STAFF,
    "review": STAFF,
    "note": STAFF,
    "propose": STAFF,
    "approve": STAFF,
    "withdraw": STAFF,
    "assign": OFFICER,
    "accept-proposal": DECIDER,
    "refuse": DECIDER,
    "extend": DECIDER,
}

CONSOLE_MATRIX: list[PageRow] = [
    PageRow("GET", "/console/sign-in", console_public(200)),
    PageRow(
        "POST",
        "/console/dev-sign-in",
        console_public(303),
        form={"role": "support_agent", "user": "kim"},
    ),
    PageRow("GET", "/console/auth/start", console_public(404)),
    PageRow("GET", "/console/auth/callback", console_public(404)),
    PageRow("POST", "/console/sign-out", console_public(303)),
    PageRow("GET", "/console/", console_only(STAFF, 200)),
    PageRow("GET", "/console/", console_only(STAFF, 200), query="?view=overdue"),
    PageRow("GET", "/console/search", console_only(STAFF, 303)),
    PageRow("POST", "/console/search", console_only(STAFF, 422), form={"kind": "phone"}),
    PageRow("GET", "/console/requests/{id}", console_only(STAFF, 404)),
    PageRow("GET", "/console/requests/{id}/refuse", console_only(STAFF, 303)),
    *[
        PageRow("POST", f"/console/requests/{{id}}/{action}", console_only(allowed, 404))
        for action, allowed in REQUEST_ACTIONS.items()
        if action not in ("note", "propose", "refuse", "extend")
    ],
    # Forms with text: filled in, so only the unknown request stops them.
    *[
        PageRow(
            "POST",
            f"/console/requests/{{id}}/{action}",
            console_only(REQUEST_ACTIONS[action], 404),
            form={"text": "x", "ground": "identity_not_verified", "new_due": "2026-12-10"},
        )
        for action in ("note", "propose", "refuse", "extend")
    ],
    PageRow("GET", "/console/intake", console_only(STAFF, 200)),
    PageRow("POST", "/console/intake", console_only(STAFF, 422), form={"type": "access"}),
    PageRow("GET", "/console/processors", console_only(OFFICER, 200)),
    PageRow("POST", "/console/deliveries/{id}/replay", console_only(OFFICER, 404)),
    PageRow("GET", "/console/statistics", console_only(OFFICER, 200)),
    PageRow("GET", "/console/export.csv", console_only(OFFICER, 200), query=MONTH),
    PageRow(
        "GET", "/console/export.csv", console_only(DECIDER, 200), query=MONTH + "&personal=true"
    ),
]


@asynccontextmanager
async def console_client(app: FastAPI, role: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client (https, cookies kept), signed in as ``role`` unless ``none``."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        page = await http.get("/console/sign-in")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        http.headers["X-CSRF-Token"] = token
        if role != "none":
            signed = await http.post(
                "/console/dev-sign-in", data={"role": role, "user": f"{role}-1"}
            )
            assert signed.status_code == 303, signed.text
        yield http


@pytest.mark.parametrize(
    "row",
    [pytest.param(row, id=f"{row.method} {row.path}{row.query}") for row in CONSOLE_MATRIX],
)
async def test_console_permission_matrix(row: PageRow, app: FastAPI) -> None:
    path = concrete(row.path) + row.query
    wrong: dict[str, str] = {}
    for role in CONSOLE_ROLES:
        async with console_client(app, role) as http:
            response = await http.request(row.method, path, data=row.form or None)
        status, expected = response.status_code, row.expected[role]
        if expected == PASSES and status in (401, 403):
            wrong[role] = f"got {status}, expected to pass authorization"
        elif expected != PASSES and status != expected:
            wrong[role] = f"got {status}, expected {expected}"
        elif status in (401, 403) and not response.headers["content-type"].startswith("text/html"):
            wrong[role] = f"{status} is not a page"
    assert wrong == {}


def test_every_console_route_is_in_the_console_matrix(app: FastAPI) -> None:
    """A new console page or action must get a row, as an API endpoint must."""
    rows = [(row.method, concrete(row.path)) for row in CONSOLE_MATRIX]
    missing = []
    for route in app.router.routes:
        path = getattr(route, "path", "")
        if not path.startswith("/console"):
            continue
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD" and not any(m == method and pattern.match(p) for m, p in rows):
                missing.append(f"{method} {path}")
    assert missing == []
