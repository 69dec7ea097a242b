"""The console's sign-in (a real OIDC provider on 127.0.0.1) and what each role may reach."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi import FastAPI

from app.clock import FrozenClock
from app.db import Database
from tests.support.lifecycle import make_subject, new_request, staff
from tests.support.oidc import OidcProvider


@pytest.fixture
def provider(clock: FrozenClock) -> Iterator[OidcProvider]:
    with OidcProvider(now=lambda: clock.now().timestamp()) as idp:
        yield idp


@pytest.fixture
def settings_overrides(provider: OidcProvider) -> dict[str, Any]:
    return {
        "auto_approve_access": False,
        "staff_idp_issuer": provider.issuer,
        "staff_idp_audience": "qx-dsr-api",
        "staff_idp_jwks_url": f"{provider.issuer}/jwks",
        "staff_idp_role_map": {
            "dsr-agent": "support_agent",
            "dsr-officer": "privacy_officer",
            "dsr-admin": "admin",
        },
        "console_oidc_client_id": provider.client_id,
    }


@pytest.fixture
async def browser_like(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies like a browser (https, so Secure cookies are sent)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    return html.split(marker, 1)[1].split('"', 1)[0]


async def sign_in_with_idp(client: httpx.AsyncClient, provider: OidcProvider) -> httpx.Response:
    started = await client.get("/console/auth/start")
    assert started.status_code == 303, started.text
    authorize = started.headers["location"]
    assert authorize.startswith(f"{provider.issuer}/authorize?")
    query = parse_qs(urlparse(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["openid profile email"]
    async with httpx.AsyncClient() as outside:  # the browser goes to the provider for real
        back = await outside.get(authorize)
    assert back.status_code == 302
    callback = urlparse(back.headers["location"])
    return await client.get(f"{callback.path}?{callback.query}")


async def test_sign_in_with_the_identity_provider_by_code_and_pkce(
    browser_like: httpx.AsyncClient, provider: OidcProvider, db: Database
) -> None:
    provider.user = {"sub": "park", "roles": ["dsr-officer", "unrelated"]}
    done = await sign_in_with_idp(browser_like, provider)
    assert done.status_code == 303 and done.headers["location"] == "/console/"
    cookie = next(
        v for k, v in done.headers.multi_items() if k == "set-cookie" and "dsr_console=" in v
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    assert "Path=/console" in cookie
    # The token endpoint got the verifier whose S256 the authorize step saw (RFC 7636 4.6).
    verifier = provider.token_requests[-1]["code_verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    assert digest.decode().rstrip("=") == provider.challenges[-1]
    assert 43 <= len(verifier) <= 128
    queue = await browser_like.get("/console/")
    assert queue.status_code == 200
    assert "park" in queue.text and "/console/statistics" in queue.text  # an officer's menu

    async with db.sessionmaker() as session:
        import sqlalchemy as sa

        signed = (
            await session.execute(
                sa.text("SELECT details FROM audit_entry WHERE action = 'console.signed_in'")
            )
        ).scalar_one()
    assert signed == {"method": "oidc", "roles": ["privacy_officer"]}


async def test_sign_in_is_audited_under_the_one_actor_convention(
    browser_like: httpx.AsyncClient, provider: OidcProvider, db: Database
) -> None:
    # An admin who is also the privacy officer acts as the privacy officer (the most accountable
    # role), as every other staff entry names them: staff:<sub>, not the alphabetically first.
    provider.user = {"sub": "park", "roles": ["dsr-admin", "dsr-officer"]}
    done = await sign_in_with_idp(browser_like, provider)
    assert done.status_code == 303, done.text
    async with db.sessionmaker() as session:
        import sqlalchemy as sa

        row = (
            await session.execute(
                sa.text("SELECT actor, role FROM audit_entry WHERE action = 'console.signed_in'")
            )
        ).one()
    assert tuple(row) == ("staff:park", "privacy_officer")


async def test_a_callback_that_this_browser_did_not_start_is_refused(
    browser_like: httpx.AsyncClient, provider: OidcProvider
) -> None:
    started = await browser_like.get("/console/auth/start")
    async with httpx.AsyncClient() as outside:
        back = await outside.get(started.headers["location"])
    callback = urlparse(back.headers["location"])
    forged = await browser_like.get(f"{callback.path}?code=stolen&state=other")
    assert forged.status_code == 401 and "text/html" in forged.headers["content-type"]
    browser_like.cookies.clear()
    no_flow = await browser_like.get(f"{callback.path}?{callback.query}")
    assert no_flow.status_code == 401
    assert (await browser_like.get("/console/")).status_code == 401


async def test_an_id_token_for_another_sign_in_is_refused(
    browser_like: httpx.AsyncClient, provider: OidcProvider
) -> None:
    # A token whose nonce is not this flow's (replayed from another sign-in), or for another
    # client, signs no one in.
    for claims in ({"nonce": "someone-elses"}, {"aud": "another-client"}):
        provider.user = {"sub": "park", "roles": ["dsr-officer"]}
        provider.overrides = claims
        refused = await sign_in_with_idp(browser_like, provider)
        assert refused.status_code == 401, claims
        assert "dsr_console=" not in refused.headers.get("set-cookie", "")
        assert (await browser_like.get("/console/")).status_code == 401


async def test_a_sign_in_left_too_long_at_the_provider_is_refused(
    browser_like: httpx.AsyncClient, provider: OidcProvider, clock: FrozenClock
) -> None:
    started = await browser_like.get("/console/auth/start")
    async with httpx.AsyncClient() as outside:
        back = await outside.get(started.headers["location"])
    clock.advance(timedelta(minutes=11))
    callback = urlparse(back.headers["location"])
    late = await browser_like.get(f"{callback.path}?{callback.query}")
    assert late.status_code == 401
    assert provider.token_requests == []  # the code was never traded


async def test_an_account_without_a_console_role_is_not_let_in(
    browser_like: httpx.AsyncClient, provider: OidcProvider
) -> None:
    provider.user = {"sub": "guest", "roles": ["wiki-reader"]}
    refused = await sign_in_with_idp(browser_like, provider)
    assert refused.status_code == 403
    assert "dsr_console=" not in refused.headers.get("set-cookie", "")


async def dev_sign_in(client: httpx.AsyncClient, role: str, user: str) -> None:
    page = await client.get("/console/sign-in")
    assert page.status_code == 200 and "dev-banner" in page.text
    response = await client.post(
        "/console/dev-sign-in",
        data={"csrf_token": csrf_of(page.text), "role": role, "user": user},
    )
    assert response.status_code == 303, response.text


async def test_an_agent_cannot_reach_officer_pages_or_actions_by_url(
    app: FastAPI, browser_like: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, "+821091110000")
    request_id = await new_request(client, subject, "access")
    await dev_sign_in(browser_like, "support_agent", "kim")
    page = await browser_like.get(f"/console/requests/{request_id}")
    assert page.status_code == 200
    for hidden in ("/refuse", "/extend", "/accept-proposal", "/assign", "/console/processors"):
        assert hidden not in page.text
    token = csrf_of(page.text)
    for path in (
        "/console/processors",
        "/console/statistics",
        "/console/export.csv?from=2026-11-01&to=2026-11-30",
    ):
        assert (await browser_like.get(path)).status_code == 403, path
    await browser_like.post(f"/console/requests/{request_id}/review", data={"csrf_token": token})
    for action in ("refuse", "extend", "accept-proposal", "assign"):
        response = await browser_like.post(
            f"/console/requests/{request_id}/{action}",
            data={
                "csrf_token": token,
                "ground": "pipa_35_4_1",
                "text": "x",
                "new_due": "2026-12-10",
                "assignee": "kim",
            },
        )
        assert response.status_code == 403, action
        assert "text/html" in response.headers["content-type"]
    no_csrf = await browser_like.post(f"/console/requests/{request_id}/take", data={})
    assert no_csrf.status_code == 403
    detail = (await browser_like.get(f"/console/requests/{request_id}")).text
    assert "검토 중" in detail  # the review went through; nothing else did


async def test_no_session_no_console(browser_like: httpx.AsyncClient) -> None:
    response = await browser_like.get("/console/")
    assert response.status_code == 401 and "text/html" in response.headers["content-type"]
    english = await browser_like.get("/console/sign-in?lang=en")
    assert "Sign in to the support console" in english.text


async def test_phone_intake_of_a_representative_with_proof(
    browser_like: httpx.AsyncClient, client: httpx.AsyncClient, app: FastAPI
) -> None:
    await dev_sign_in(browser_like, "support_agent", "kim")
    form = await browser_like.get("/console/intake")
    assert form.status_code == 200
    token = csrf_of(form.text)
    incomplete = await browser_like.post(
        "/console/intake", data={"csrf_token": token, "type": "access", "channel": "phone"}
    )
    assert incomplete.status_code == 422 and "error-summary" in incomplete.text
    taken = await browser_like.post(
        "/console/intake",
        data={
            "csrf_token": token,
            "type": "suspension",
            "purposes": ["marketing", "app_service"],
            "phone": "010-7777-1234",
            "channel": "counter",
            "method": "representative",
            "relation": "legal_representative_of_child_under_14",
            "document_kind": "family_relation_certificate",
            "id_check": "id_document_in_person",
            "document_ref": "docs:2026/11/0077",
            "notify_channel": "sms",
            "notify_to": "010-8888-1234",
        },
    )
    assert taken.status_code == 303, taken.text
    request_id = taken.headers["location"].split("/")[-1].split("?")[0]
    detail = await client.get(
        f"/v1/staff/requests/{request_id}", headers=staff(app, "support_agent")
    )
    body = detail.json()
    assert body["intake_channel"] == "counter" and body["verification_method"] == "representative"
    assert body["verification"]["document_ref"] == "docs:2026/11/0077"
    assert body["verification"]["checked_by"] == "staff:kim"
    assert sorted(body["scope"]["purposes"]) == ["app_service", "marketing"]
