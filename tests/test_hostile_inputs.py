"""Inputs that once reached a 500: each must be a 4xx problem+json, and the service keeps going.

NUL bytes (PostgreSQL text cannot hold one) in query strings, paths and JSON bodies; datetimes
whose UTC value falls outside what Python and PostgreSQL hold; audit cursors that decode to a
non-ASCII digit or to an integer past bigint; a validly signed token expiring after year 9999.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.lifecycle import make_subject, staff

OFFICER = ("privacy_officer",)


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in (statuses or range(400, 500)), (
        response.status_code,
        response.text,
    )
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


def cursor_of(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


async def still_answers(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get("/v1/audit", headers=staff(app, *OFFICER))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "query",
    [
        {"actor": "a\x00b"},
        {"action": "\x00"},
        {"target_type": "request\x00"},
        {"target_id": "x\x00y"},
    ],
)
async def test_nul_in_audit_filters(client: httpx.AsyncClient, app: FastAPI, query: Any) -> None:
    response = await client.get("/v1/audit", params=query, headers=staff(app, *OFFICER))
    body = assert_problem(response, 422)
    assert body["errors"][0]["location"] == "query"
    assert body["errors"][0]["pointer"] == "/query/" + next(iter(query))
    assert "\x00" not in response.text
    await still_answers(client, app)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/processors/hct%00"),
        ("PATCH", "/v1/processors/hct%00"),
        ("POST", "/v1/processors/hct%00/rotate-secret"),
        ("GET", "/v1/processors/hct%00/deliveries"),
    ],
)
async def test_nul_in_processor_path_codes(
    client: httpx.AsyncClient, app: FastAPI, method: str, path: str
) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    response = await client.request(method, path, json=body, headers=staff(app, *OFFICER))
    assert_problem(response, 404, 422)
    await still_answers(client, app)


@pytest.mark.parametrize("field", ["name", "nation", "contact"])
async def test_nul_in_processor_fields(client: httpx.AsyncClient, app: FastAPI, field: str) -> None:
    body = {
        "code": "hct-tw",
        "name": "HCT",
        "nation": "Taiwan",
        "webhook_url": "https://hooks.hct.example/x",
    }
    body[field] = "H\x00CT"
    response = await client.post("/v1/processors", json=body, headers=staff(app, *OFFICER))
    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {"pointer": f"/{field}", "location": "body", "message": "must not contain NUL"}
    ]
    await still_answers(client, app)


async def test_an_escaped_backslash_before_u0000_is_not_a_nul(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = {
        "code": "hct-tw",
        "name": "HCT \\u0000 literally",
        "nation": "Taiwan",
        "webhook_url": "http://127.0.0.1:9/x",
    }
    response = await client.post("/v1/processors", json=body, headers=staff(app, *OFFICER))
    assert response.status_code != 422 or "NUL" not in response.text, response.text


async def test_nul_in_a_nested_body_field(client: httpx.AsyncClient, app: FastAPI) -> None:
    subject = await make_subject(app)
    body = {"type": "correction", "corrections": [{"item": "address", "new_value": "a\x00"}]}
    response = await client.post("/v1/requests", json=body, headers=subject.headers)
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "/corrections/0/new_value"


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00",  # read in Asia/Seoul: before year 1 in UTC
        "9999-12-31T23:59:59-14:00",
    ],
)
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/audit", "at_from"),
        ("/v1/audit", "at_to"),
        ("/v1/staff/requests", "due_before"),
        ("/v1/staff/requests", "received_from"),
        ("/v1/deliveries", "since"),
        ("/v1/deliveries", "until"),
    ],
)
async def test_datetimes_out_of_range_in_utc(
    client: httpx.AsyncClient, app: FastAPI, path: str, name: str, at: str
) -> None:
    response = await client.get(path, params={name: at}, headers=staff(app, *OFFICER))
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == f"/query/{name}"
    await still_answers(client, app)


@pytest.mark.parametrize("at", ["1700000000", "0", "1.5e9"])
async def test_datetimes_given_as_numbers_are_refused(
    client: httpx.AsyncClient, app: FastAPI, at: str
) -> None:
    response = await client.get("/v1/audit", params={"at_from": at}, headers=staff(app, *OFFICER))
    assert_problem(response, 422)


@pytest.mark.parametrize(
    "cursor",
    [
        cursor_of("²"),
        cursor_of(str(2**63)),
        cursor_of(2**63),  # a JSON number, not the string the cursor holds
        cursor_of(str(2**64 + 1)),
        cursor_of("-1"),
        cursor_of("1\x00"),
        "%%%",
    ],
)
async def test_audit_cursors_that_do_not_decode_to_an_id(
    client: httpx.AsyncClient, app: FastAPI, cursor: str
) -> None:
    response = await client.get(
        "/v1/audit", params={"cursor": cursor}, headers=staff(app, *OFFICER)
    )
    assert_problem(response, 422)
    await still_answers(client, app)


@pytest.mark.parametrize("years", [8000, 100_000])
async def test_a_signed_token_expiring_after_year_9999(
    client: httpx.AsyncClient, app: FastAPI, years: int
) -> None:
    token = app.state.tokens.issue_staff_token(
        sub="agent-1",
        roles=["privacy_officer"],
        now=app.state.clock.now(),
        ttl=timedelta(days=366 * years),
    )
    response = await client.get("/v1/audit", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)
    await still_answers(client, app)


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
@pytest.mark.parametrize("path", ["/v1/staff/export", "/v1/staff/statistics"])
async def test_days_whose_local_bounds_fall_out_of_range(
    client: httpx.AsyncClient, app: FastAPI, path: str, day: str
) -> None:
    """The day before 0001-01-01 (the start of a range) does not exist: it answered 500."""
    response = await client.get(path, params={"from": day, "to": day}, headers=staff(app, *OFFICER))
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "/query/from"
    await still_answers(client, app)


@pytest.mark.parametrize("day", ["0", "86400", "2026-11-26T00:00:00", "20261126"])
async def test_days_given_as_numbers_or_times_are_refused(
    client: httpx.AsyncClient, app: FastAPI, day: str
) -> None:
    # pydantic reads "0" as 1970-01-01 (a Unix time); the contract says a date.
    response = await client.get(
        "/v1/staff/statistics",
        params={"from": day, "to": day},
        headers=staff(app, *OFFICER),
    )
    assert_problem(response, 422)


@pytest.mark.parametrize("path", ["/console/export.csv", "/console/statistics"])
async def test_console_days_out_of_range_are_a_page_not_a_500(
    client: httpx.AsyncClient, app: FastAPI, path: str
) -> None:
    token = app.state.tokens.issue_staff_token(
        sub="officer-1",
        roles=["privacy_officer"],
        now=app.state.clock.now(),
        ttl=timedelta(hours=1),
    )
    client.cookies.set("dsr_console", token, domain="testserver.local", path="/console")
    response = await client.get(path, params={"from": "0001-01-01", "to": "0001-01-01"})
    assert response.status_code == 422, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
