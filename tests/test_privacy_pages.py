"""The privacy center over HTTP (no browser): the verification rules, the session cookie, one
subject's session against another's request, and the API's validation on the forms."""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app import routers
from app.models.requests import STATUSES
from app.outbox.worker import Worker
from app.routers.privacy_forms import KINDS
from app.web.i18n import LOCALES, catalogue
from tests.support.lifecycle import Subject, drive, make_subject, new_request
from tests.support.servers import RecordingServer

GATEWAYS = {
    "sms_gateway_url": "http://127.0.0.1:9/sms",
    "email_gateway_url": "http://127.0.0.1:9/email",
}


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
    assert known.status_code == unknown.status_code == 303
    pages = [await browser.get(answer.headers["location"]) for answer in (known, unknown)]
    assert pages[0].status_code == pages[1].status_code == 200
    assert "010-****-0001" in pages[0].text and "010-****-0002" in pages[1].text
    assert normalised(pages[0].text) == normalised(pages[1].text)


async def test_the_code_page_is_its_own_address_so_reload_and_language_send_no_new_code(
    browser: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    sent = await post_form(
        browser, "/privacy/verify", {"channel": "sms", "destination": "010-5555-0001"}
    )
    assert sent.status_code == 303
    code_page = sent.headers["location"]
    assert re.fullmatch(r"/privacy/verify/[0-9a-f-]{36}", code_page)
    english = await browser.get(code_page + "?lang=en")
    assert english.status_code == 200
    assert "Enter the code" in english.text and "010-****-0001" in english.text
    assert f'href="{code_page}?lang=ko"' in english.text  # the switch stays on this page
    assert (await browser.get(code_page)).status_code == 200  # a reload
    await worker.drain()
    assert len(gateway.requests("/sms")) == 1  # one code, however often the page is shown


async def test_a_second_code_within_the_minute_is_a_page_with_the_wait(
    browser: httpx.AsyncClient,
) -> None:
    data = {"channel": "sms", "destination": "010-5555-0001"}
    assert (await post_form(browser, "/privacy/verify", data)).status_code == 303
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
    sent = await post_form(
        browser, "/privacy/verify", {"channel": "sms", "destination": "010-5555-0001"}
    )
    page = await browser.get(sent.headers["location"])
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


def privacy_posts() -> list[str]:
    """Every form target of the privacy center: each POST of each app/routers/privacy*.py."""
    paths = set()
    for module in pkgutil.iter_modules(routers.__path__):
        if module.name.startswith("privacy"):
            router = importlib.import_module(f"app.routers.{module.name}").router
            paths |= {
                route.path
                for route in router.routes
                if isinstance(route, APIRoute) and "POST" in route.methods
            }
    return sorted(paths)


async def test_every_privacy_form_refuses_a_post_without_its_csrf_token(
    app: FastAPI, client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, "+821055550001")
    request_id = await new_request(client, subject, "deletion")
    refused_id = await new_request(client, subject, "correction")
    await drive(app, refused_id, "refused")
    sign_in_as(browser, subject)
    await browser.get("/privacy/requests")  # the browser holds its CSRF cookie
    paths = privacy_posts()
    assert {
        "/privacy/verify",
        "/privacy/verify/{verification_id}",
        "/privacy/sign-out",
        "/privacy/requests/new/{kind}",
        "/privacy/requests/{request_id}/withdraw",
        "/privacy/requests/{request_id}/objection",
    } <= set(paths)
    form = {
        "channel": "sms",
        "destination": "010-5555-0001",
        "code": "123456",
        "step": "submit",
        "purposes": "marketing",
        "reason": "동의하지 않습니다.",
    }
    for path in paths:
        targets = [
            path.replace("{verification_id}", str(uuid.uuid4())).replace(
                "{request_id}", refused_id if path.endswith("objection") else request_id
            )
        ]
        if "{kind}" in path:
            targets = [path.replace("{kind}", kind) for kind in KINDS]
        for target in targets:
            response = await browser.post(target, data=form)
            assert response.status_code == 403, (target, response.status_code)
            assert "보안 확인 정보가 없거나 맞지 않습니다" in response.text
    # Nothing was done: no code sent, no request made, withdrawn or objected to.
    assert await count_rows(app, "verification") == 0
    mine = (await client.get("/v1/requests", headers=subject.headers)).json()["items"]
    assert sorted(r["status"] for r in mine) == ["received", "refused"]
    detail = (await client.get(f"/v1/requests/{refused_id}", headers=subject.headers)).json()
    assert detail["objections"] == []
    # Still signed in: the sign-out was refused too.
    assert (await browser.get("/privacy/requests")).status_code == 200


async def count_rows(app: FastAPI, table: str) -> int:
    async with app.state.db.transaction() as session:
        return int((await session.exec(sa.text(f"SELECT count(*) FROM {table}"))).one()[0])


async def test_a_refusal_is_shown_in_the_pages_language_with_a_way_to_object_in_time(
    app: FastAPI, client: httpx.AsyncClient, browser: httpx.AsyncClient, clock: Any
) -> None:
    subject = await make_subject(app, "+821055550001")
    request_id = await new_request(client, subject, "deletion")  # submitted in Korean
    await drive(app, request_id, "refused")
    sign_in_as(browser, subject)
    english = (await browser.get(f"/privacy/requests/{request_id}?lang=en")).text
    assert "the requester could not be verified as the data subject" in english
    assert "PIPA Enforcement Decree Art. 46(1)" in english
    assert "시행령" not in english and "정보주체 본인" not in english
    assert f'href="/privacy/requests/{request_id}/objection"' in english

    clock.advance(timedelta(days=31))  # past the 30-day objection window
    korean = (await browser.get(f"/privacy/requests/{request_id}?lang=ko")).text
    assert f"/privacy/requests/{request_id}/objection" not in korean
    late = await post_form(
        browser,
        f"/privacy/requests/{request_id}/objection",
        {"reason": "늦었지만 이의를 제기합니다."},
        form_page=f"/privacy/requests/{request_id}",
    )
    assert late.status_code == 409
    assert "지금은 이의를 제기할 수 없습니다" in late.text
    detail = (await client.get(f"/v1/requests/{request_id}", headers=subject.headers)).json()
    assert detail["objections"] == []


async def test_a_done_correction_says_what_happened_not_how_to_read_a_report(
    app: FastAPI, client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, "+821055550001")
    correction = await new_request(client, subject, "correction")
    access = await new_request(client, subject, "access")
    await drive(app, correction, "completed")
    sign_in_as(browser, subject)
    page = (await browser.get(f"/privacy/requests/{correction}")).text
    assert "결과는 문자나 이메일로도 알려 드렸습니다" in page
    assert "열람 결과" not in page
    listed = (await browser.get("/privacy/requests")).text
    assert listed.count("결과는 문자나 이메일로도 알려 드렸습니다") == 1
    assert access in listed


async def test_history_and_next_texts_exist_for_every_action_and_status() -> None:
    from app.requests.lifecycle import TRANSITIONS
    from app.requests.queries import SUBJECT_HISTORY_ACTIONS

    for lang in LOCALES:
        texts = catalogue(lang)
        for action in {"submitted", *TRANSITIONS, *SUBJECT_HISTORY_ACTIONS}:
            assert f"privacy.history.{action}" in texts, (lang, action)
        for status in STATUSES:
            assert f"privacy.next.{status}" in texts and f"privacy.status.{status}" in texts


async def test_error_pages_lead_a_signed_in_person_back_to_their_requests(
    app: FastAPI, browser: httpx.AsyncClient
) -> None:
    signed_out = await browser.get(f"/privacy/requests/{uuid.uuid4()}")
    assert signed_out.status_code == 401
    assert 'href="/privacy/requests"' not in signed_out.text.split("<main", 1)[1]
    sign_in_as(browser, await make_subject(app, "+821055550001"))
    missing = await browser.get(f"/privacy/requests/{uuid.uuid4()}")
    assert missing.status_code == 404
    main = missing.text.split("<main", 1)[1]
    assert 'href="/privacy/requests"' in main and "내 요청 보기" in main
    assert "오류 번호" not in main  # an error the page explains needs no reference


@pytest.mark.parametrize(
    ("settings_overrides", "hint"),
    [({"env": "dev"}, True), ({"env": "dev", **GATEWAYS}, False), (GATEWAYS, False)],
)
async def test_in_development_without_a_gateway_the_code_page_says_where_the_code_is(
    browser: httpx.AsyncClient, hint: bool
) -> None:
    sent = await post_form(
        browser, "/privacy/verify", {"channel": "sms", "destination": "010-5555-0001"}
    )
    page = await browser.get(sent.headers["location"])
    assert ("dsr serve를 실행한 터미널" in page.text) is hint
