"""The privacy center over HTTP (no browser): the verification rules, the session cookie, one
subject's session against another's request, and the API's validation on the forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.outbox.worker import Worker
from tests.support.lifecycle import Subject, make_subject, new_request
from tests.support.servers import RecordingServer


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "gateway_token": "gw-secret",
    }


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies like a browser, over https (the cookies are Secure)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def token_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def post_form(
    http: httpx.AsyncClient, path: str, data: dict[str, Any], *, form_page: str | None = None
) -> httpx.Response:
    page = await http.get(form_page or path)
    return await http.post(path, data={**data, "csrf_token": token_in(page.text)})


def sign_in_as(http: httpx.AsyncClient, subject: Subject) -> None:
    token = subject.headers["Authorization"].removeprefix("Bearer ")
    http.cookies.set("dsr_privacy", token, domain="testserver.local", path="/privacy")


def normalised(html: str) -> str:
    html = re.sub(r'name="csrf_token" value="[^"]+"', "", html)
    html = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", html)
    return re.sub(r"010-\*\*\*\*-[0-9]{4}", "MASKED", html)


async def test_known_and_unknown_destinations_get_the_same_page(
    app: FastAPI, browser: httpx.AsyncClient
) -> None:
    await make_subject(app, "+821055550001")  # known: a verified identifier exists
    known = await post_form(
        browser, "/privacy/verify", {"channel": "sms", "destination": "010-5555-0001"}
    )
    unknown = await post_form(
        browser, "/privacy/verify", {"channel": "sms", "destination": "010-7777-0002"}
    )
    assert known.status_code == unknown.status_code == 200
    assert normalised(known.text) == normalised(unknown.text)


async def test_a_second_code_within_the_minute_is_a_page_with_the_wait(
    browser: httpx.AsyncClient,
) -> None:
    data = {"channel": "sms", "destination": "010-5555-0001"}
    assert (await post_form(browser, "/privacy/verify", data)).status_code == 200
    again = await post_form(browser, "/privacy/verify", data)
    assert again.status_code == 429
    assert again.headers["content-type"].startswith("text/html")
    assert int(again.headers["retry-after"]) > 0
    assert "후에 다시 시도해 주세요" in again.text


async def test_an_invalid_destination_is_shown_on_the_form_without_echoing_markup(
    browser: httpx.AsyncClient,
) -> None:
    response = await post_form(
        browser, "/privacy/verify", {"channel": "sms", "destination": "<script>x</script>"}
    )
    assert response.status_code == 422
    assert "휴대전화 번호 형식이 올바르지 않습니다" in response.text
    assert "<script>x" not in response.text and "&lt;script&gt;x" in response.text


async def test_confirming_sets_a_strict_short_lived_session_cookie(
    browser: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    page = await post_form(
        browser, "/privacy/verify", {"channel": "sms", "destination": "010-5555-0001"}
    )
    action = re.search(r'action="(/privacy/verify/[0-9a-f-]+)"', page.text)
    assert action
    await worker.drain()
    code = gateway.requests("/sms")[-1].json()["variables"]["code"]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    missed = await browser.post(
        action.group(1), data={"code": wrong, "csrf_token": token_in(page.text)}
    )
    assert missed.status_code == 422 and "4번 더" in missed.text
    confirmed = await browser.post(
        action.group(1), data={"code": code, "csrf_token": token_in(page.text)}
    )
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == "/privacy/requests"
    cookie = next(
        value
        for key, value in confirmed.headers.multi_items()
        if key == "set-cookie" and value.startswith("dsr_privacy=")
    )
    for part in ("HttpOnly", "SameSite=strict", "Secure", "Path=/privacy", "Max-Age=1800"):
        assert part.lower() in cookie.lower(), cookie
    listed = await browser.get("/privacy/requests")
    assert listed.status_code == 200 and "아직 요청이 없습니다" in listed.text
    assert listed.headers["cache-control"] == "no-store"


async def test_another_subjects_session_cannot_read_or_withdraw(
    app: FastAPI, client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    owner = await make_subject(app, "+821055550001")
    request_id = await new_request(client, owner, "deletion")
    sign_in_as(browser, await make_subject(app, "+821099990000"))
    seen = await browser.get(f"/privacy/requests/{request_id}")
    assert seen.status_code == 404 and "페이지를 찾을 수 없습니다" in seen.text
    withdrawn = await post_form(
        browser, f"/privacy/requests/{request_id}/withdraw", {}, form_page="/privacy/requests"
    )
    assert withdrawn.status_code == 404
    still = await client.get(f"/v1/requests/{request_id}", headers=owner.headers)
    assert still.json()["status"] == "received"


async def test_a_correction_the_api_would_refuse_is_refused_on_the_form(
    app: FastAPI, client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, "+821055550001")
    sign_in_as(browser, subject)
    response = await post_form(
        browser,
        "/privacy/requests/new/correction",
        {"item": "phone", "new_value": "12", "step": "submit"},
        form_page="/privacy/requests/new/correction?item=phone",
    )
    assert response.status_code == 422
    assert "전화번호 형식이 올바르지 않습니다" in response.text
    assert 'href="#new_value"' in response.text  # the error summary links to the field
    listed = await client.get("/v1/requests", headers=subject.headers)
    assert listed.json()["items"] == []


async def test_pages_are_not_in_the_api_contract(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert not [path for path in paths if path.startswith(("/privacy", "/console", "/docs"))]


async def test_a_request_from_the_privacy_center_reaches_the_staff_queue_as_web(
    app: FastAPI, client: httpx.AsyncClient, browser: httpx.AsyncClient, staff_headers: Any
) -> None:
    sign_in_as(browser, await make_subject(app, "+821055550001"))
    submitted = await post_form(
        browser,
        "/privacy/requests/new/suspension",
        {"purposes": ["marketing", "counseling"], "step": "submit"},
    )
    assert submitted.status_code == 303
    request_id = submitted.headers["location"].split("/")[-1].split("?")[0]
    queue = await client.get("/v1/staff/requests", headers=staff_headers("support_agent"))
    assert queue.status_code == 200, queue.text
    row = next(item for item in queue.json()["items"] if item["id"] == request_id)
    assert row["intake_channel"] == "web"
    review = await client.post(
        f"/v1/staff/requests/{request_id}/review", headers=staff_headers("support_agent")
    )
    assert review.status_code == 200, review.text


async def test_an_expired_session_is_a_page_asking_to_verify_again(
    app: FastAPI, browser: httpx.AsyncClient, clock: Any
) -> None:
    subject = await make_subject(app, "+821055550001")
    sign_in_as(browser, subject)
    assert (await browser.get("/privacy/requests")).status_code == 200
    clock.advance(timedelta(days=401))  # past the token's lifetime
    response = await browser.get("/privacy/requests?lang=en")
    assert response.status_code == 401
    assert "Your session has ended" in response.text
    assert 'href="/privacy/verify"' in response.text
