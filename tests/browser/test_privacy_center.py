"""The privacy center in a real browser: every right exercised by the demo subject, Korean first.

Each test serves the app on 127.0.0.1 with the demo data set and its data map, codes arriving
at the loopback SMS gateway (the worker is drained in the test to deliver them), and axe-core
checking every page it visits.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from playwright.async_api import BrowserContext, Page, expect

from app import routers
from app.clock import FrozenClock
from app.outbox.worker import Worker
from app.routers.privacy_forms import KINDS
from tests.browser.conftest import ARTIFACTS, AssertAccessible, save_screenshots, sent_code
from tests.support.demo import demo_settings, fresh_demo
from tests.support.lifecycle import drive, make_subject
from tests.support.servers import RecordingServer

DEMO_PHONE = "010-5555-0001"
PRIVACY_COOKIE = "dsr_privacy"


@pytest.fixture
async def demo(database_url: str) -> AsyncIterator[str]:
    async with fresh_demo(database_url, subjects=3) as url:
        yield url


@pytest.fixture
def settings_overrides(demo: str, tmp_path: Path, gateway: RecordingServer) -> dict[str, Any]:
    return demo_settings(tmp_path, gateway, gateway_token="gw-secret")


async def sign_in(page: Page, worker: Worker, gateway: RecordingServer, check: Any = None) -> None:
    """Verify as the demo subject with the code the loopback SMS gateway received."""
    await page.goto("/privacy/verify")
    if check:
        await check(page)
    await page.get_by_label("휴대전화 (문자)").check()
    await page.get_by_label("휴대전화 번호 또는 이메일 주소").fill(DEMO_PHONE)
    await page.get_by_role("button", name="인증번호 받기").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("인증번호 입력")
    await expect(page.get_by_text("010-****-0001")).to_be_visible()
    if check:
        await check(page)
    await worker.drain()
    await page.get_by_label("인증번호 6자리").fill(sent_code(gateway))
    await page.get_by_role("button", name="확인").click()
    await expect(page).to_have_url(re.compile(r"/privacy/requests$"))


async def start_request(page: Page, name: str, check: Any = None) -> None:
    await page.goto("/privacy/requests/new")
    if check:
        await check(page)
    await page.get_by_role("link", name=name, exact=True).click()


async def review_and_submit(page: Page, check: Any = None) -> str:
    """Continue to the confirmation step, submit, and return the new request's id."""
    await page.get_by_role("button", name="계속").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("요청 내용 확인")
    if check:
        await check(page)
    await page.get_by_role("button", name="요청 제출").click()
    await expect(page.get_by_role("status")).to_contain_text("요청을 접수했습니다")
    match = re.search(r"/privacy/requests/([0-9a-f-]{36})", page.url)
    assert match, page.url
    return match.group(1)


async def test_start_page_explains_the_rights_and_switches_to_english(
    page: Page, assert_accessible: AssertAccessible
) -> None:
    await page.goto("/privacy/")
    assert await page.get_attribute("html", "lang") == "ko"
    await expect(page.get_by_role("heading", level=1)).to_have_text("개인정보 권리 행사")
    for right in ("열람", "정정", "삭제", "처리정지", "동의 철회"):
        await expect(page.get_by_role("heading", name=right, exact=True)).to_be_visible()
    await expect(page.get_by_text("국번 없이 118")).to_be_visible()  # policy section 9
    await assert_accessible(page)
    await save_screenshots(page, "privacy-start")

    await page.get_by_role("link", name="English").click()
    assert await page.get_attribute("html", "lang") == "en"
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your privacy rights")
    await assert_accessible(page)
    await page.get_by_role("link", name="Verify your identity to start").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Verify your identity")
    await page.get_by_role("link", name="한국어").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("본인 확인")


async def test_keyboard_only_skip_link_and_focus(page: Page) -> None:
    await page.goto("/privacy/verify")
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="본문 바로가기")
    await expect(skip).to_be_focused()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")  # into main: the first radio
    focused = await page.evaluate("document.activeElement.closest('main') !== null")
    assert focused


async def tab_to(page: Page, name: str, *, limit: int = 60) -> None:
    """Press Tab until the focused element is the one called ``name`` (its text or label, or
    their start: "고객 상담" for "고객 상담(본인 확인, …)")."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            """() => {
                const el = document.activeElement;
                const label = el.labels && el.labels.length ? el.labels[0].textContent : "";
                return (label || el.textContent || el.value || "").trim();
            }"""
        )
        if focused == name or focused.startswith(f"{name}("):
            return
    raise AssertionError(f"{name!r} is not reachable with Tab on {page.url}")


async def test_a_request_made_with_the_keyboard_alone(
    page: Page, worker: Worker, gateway: RecordingServer
) -> None:
    """Verification, the form, the confirmation and the submission: Tab, Space, Enter, typing."""
    await page.goto("/privacy/verify")
    await tab_to(page, "휴대전화 (문자)")
    await page.keyboard.press("Space")
    await tab_to(page, "휴대전화 번호 또는 이메일 주소")
    await page.keyboard.type(DEMO_PHONE)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("인증번호 입력")
    await worker.drain()
    await tab_to(page, "인증번호 6자리")
    await page.keyboard.type(sent_code(gateway))
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/privacy/requests$"))

    await page.goto("/privacy/requests/new")
    await tab_to(page, "처리정지")
    await page.keyboard.press("Enter")  # follows the link: wait for the form before tabbing on
    await expect(page).to_have_url(re.compile(r"/privacy/requests/new/suspension$"))
    await page.wait_for_load_state()
    await tab_to(page, "고객 상담")
    await page.keyboard.press("Space")
    await expect(page.get_by_label("고객 상담")).to_be_checked()
    await tab_to(page, "계속")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("요청 내용 확인")
    await tab_to(page, "요청 제출")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("요청을 접수했습니다")
    await expect(page.locator("[data-status]")).to_have_text("접수됨")


async def test_wrong_and_expired_codes(
    page: Page,
    worker: Worker,
    gateway: RecordingServer,
    clock: FrozenClock,
    assert_accessible: AssertAccessible,
) -> None:
    await page.goto("/privacy/verify")
    await page.get_by_role("button", name="인증번호 받기").click()  # nothing entered
    summary = page.locator("[data-error-summary]")
    await expect(summary).to_contain_text("휴대전화 번호를 입력해 주세요")
    await expect(summary).to_be_focused()
    await assert_accessible(page)
    await summary.get_by_role("link").click()
    await expect(page.get_by_label("휴대전화 번호 또는 이메일 주소")).to_be_focused()

    await page.get_by_label("휴대전화 번호 또는 이메일 주소").fill(DEMO_PHONE)
    await page.get_by_role("button", name="인증번호 받기").click()
    await worker.drain()
    code = sent_code(gateway)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    await page.get_by_label("인증번호 6자리").fill(wrong)
    await page.get_by_role("button", name="확인").click()
    await expect(page.locator("[data-error-summary]")).to_contain_text("4번 더 입력할 수 있습니다")
    await assert_accessible(page)

    clock.advance(timedelta(minutes=6))
    await page.get_by_label("인증번호 6자리").fill(code)
    await page.get_by_role("button", name="확인").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "인증번호의 유효 시간이 지났습니다"
    )
    await assert_accessible(page)
    await page.get_by_role("link", name="본인 확인하기").click()
    await expect(page).to_have_url(re.compile(r"/privacy/verify$"))


async def test_access_request_report_and_print(
    page: Page,
    worker: Worker,
    gateway: RecordingServer,
    assert_accessible: AssertAccessible,
) -> None:
    await sign_in(page, worker, gateway, assert_accessible)
    await expect(page.get_by_text("아직 요청이 없습니다")).to_be_visible()
    await assert_accessible(page)
    await start_request(page, "열람", assert_accessible)
    await expect(page.get_by_role("heading", level=1)).to_have_text("개인정보 열람 요구")
    await assert_accessible(page)
    request_id = await review_and_submit(page, assert_accessible)
    await assert_accessible(page)

    await worker.drain()  # the access job builds the report
    await page.reload()
    await expect(page.locator("[data-status]")).to_have_text("완료")
    await page.get_by_role("link", name="열람 결과 보기").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("개인정보 열람 결과")
    await expect(page.locator("#items")).to_contain_text("전화번호")
    await assert_accessible(page)
    await save_screenshots(page, "privacy-report")

    await page.emulate_media(media="print")
    await page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    await page.screenshot(path=str(ARTIFACTS / "privacy-report-print.png"), full_page=True)
    await expect(page.get_by_role("link", name="요청으로 돌아가기")).to_be_hidden()
    await expect(page.locator("#items")).to_be_visible()
    pdf = await page.pdf(prefer_css_page_size=True)  # the @page rule: A4
    assert pdf.startswith(b"%PDF")
    assert b"/MediaBox [0 0 595" in pdf or b"/MediaBox [0 0 594" in pdf  # 210 mm wide
    await page.emulate_media(media="screen")
    await page.get_by_role("link", name="요청으로 돌아가기").click()
    await expect(page).to_have_url(re.compile(rf"/privacy/requests/{request_id}$"))

    await page.goto("/privacy/requests")
    card = page.locator(f"[data-request-id='{request_id}']")
    await expect(card).to_contain_text("개인정보 열람 요구")
    await expect(card).to_contain_text("2026년 11월 26일 (목)")  # received, in KST
    await assert_accessible(page)
    await save_screenshots(page, "privacy-requests")


async def test_correction_picks_an_item_and_a_record(
    page: Page,
    worker: Worker,
    gateway: RecordingServer,
    assert_accessible: AssertAccessible,
) -> None:
    await sign_in(page, worker, gateway)
    await start_request(page, "정정")
    await assert_accessible(page)
    await page.get_by_label("주소", exact=True).check()
    await page.get_by_role("button", name="계속").click()
    records = page.get_by_role("group", name="어느 기록을 정정할까요?")
    await expect(records).to_be_visible()
    options = records.get_by_role("radio")
    assert await options.count() > 2  # every record, and each one
    await assert_accessible(page)
    await save_screenshots(page, "privacy-correction")

    await page.get_by_label("올바른 주소").fill("서울")  # too short: the API's own rule
    await options.nth(1).check()
    await page.get_by_role("button", name="계속").click()
    summary = page.locator("[data-error-summary]")
    await expect(summary).to_contain_text("주소를 5자 이상")
    await assert_accessible(page)
    await expect(records.get_by_role("radio").nth(1)).to_be_checked()  # the choice is kept

    new_address = "부산광역시 해운대구 센텀중앙로 97, 1501호 <b>"
    await page.get_by_label("올바른 주소").fill(new_address)
    request_id = await review_and_submit(page)
    await expect(page.locator("main")).to_contain_text(new_address)  # escaped, as typed
    assert await page.locator("main b").count() == 0
    await expect(page.locator("[data-status]")).to_have_text("접수됨")
    await expect(page.get_by_text("10일 남음")).to_be_visible()
    assert request_id


async def test_deletion_by_category_shows_what_the_law_keeps(
    page: Page,
    worker: Worker,
    gateway: RecordingServer,
    assert_accessible: AssertAccessible,
) -> None:
    await sign_in(page, worker, gateway)
    await start_request(page, "삭제")
    kept = page.locator("[data-retention]")
    await expect(kept).to_contain_text("국세기본법")
    await expect(kept).to_contain_text("5년")
    await assert_accessible(page)
    await page.get_by_label("선택한 종류만").check()
    await page.get_by_role("button", name="계속").click()
    await expect(page.locator("[data-error-summary]")).to_contain_text("하나 이상 선택")
    await page.get_by_label("연락처 정보").check()
    await page.get_by_role("button", name="계속").click()
    await expect(page.locator("[data-review]")).to_contain_text("연락처 정보")
    await expect(page.locator("[data-retention]")).to_be_visible()  # again, before submitting
    await assert_accessible(page)
    await page.get_by_role("button", name="요청 제출").click()
    await expect(page.locator("main")).to_contain_text("연락처 정보")


async def test_suspension_withdraw_and_consent_withdrawal_duplicate(
    page: Page,
    worker: Worker,
    gateway: RecordingServer,
    assert_accessible: AssertAccessible,
) -> None:
    await sign_in(page, worker, gateway)
    await start_request(page, "처리정지")
    await assert_accessible(page)
    await page.get_by_label("고객 상담").check()
    await review_and_submit(page)
    await page.get_by_role("link", name="요청 철회").click()
    await assert_accessible(page)
    await page.get_by_role("button", name="요청 철회").click()
    await expect(page.get_by_role("status")).to_contain_text("요청을 철회했습니다")
    await expect(page.locator("[data-status]")).to_have_text("철회됨")
    await expect(page.locator("[data-history]")).to_contain_text("요청 철회")

    await start_request(page, "동의 철회")
    group = page.get_by_role("group", name="철회할 동의")
    # Only the optional consents: marketing, and provision to third parties (policy section 4).
    assert await group.get_by_role("checkbox").count() == 2
    await page.get_by_label("마케팅 및 이벤트 안내").check()
    await review_and_submit(page)
    # The same again while that one is open: refused as the API refuses it, as a page.
    await start_request(page, "동의 철회")
    await page.get_by_label("마케팅 및 이벤트 안내").check()
    await page.get_by_role("button", name="계속").click()
    await page.get_by_role("button", name="요청 제출").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "이미 처리 중인 같은 종류의 요청이 있습니다"
    )
    await assert_accessible(page)


async def test_objection_after_a_refusal(
    app: FastAPI,
    page: Page,
    worker: Worker,
    gateway: RecordingServer,
    assert_accessible: AssertAccessible,
) -> None:
    await sign_in(page, worker, gateway)
    await start_request(page, "삭제")
    request_id = await review_and_submit(page)  # everything that may go
    await drive(app, request_id, "refused")  # the privacy officer refuses, through the services

    await page.reload()
    decision = page.locator("[data-decision]")
    await expect(decision).to_contain_text("거절")
    await expect(decision).to_contain_text("개인정보 보호법 시행령 제46조제1항")
    await expect(decision).to_contain_text("신분 확인 서류가 제출되지 않았습니다.")
    await expect(page.get_by_text("국번 없이 118")).to_be_visible()
    await assert_accessible(page)
    await save_screenshots(page, "privacy-refused")
    await page.get_by_role("link", name="이의 제기").click()
    await page.get_by_role("button", name="이의 제기").click()
    await expect(page.locator("[data-error-summary]")).to_contain_text("사유를 적어 주세요")
    await assert_accessible(page)
    await page.get_by_label("이의 제기 사유").fill("신분증 사본을 고객센터에 이미 제출했습니다.")
    await page.get_by_role("button", name="이의 제기").click()
    await expect(page.get_by_role("status")).to_contain_text("이의 제기를 접수했습니다")
    await expect(page.locator("[data-objection='open']")).to_contain_text("신분증 사본")
    await expect(page.get_by_role("link", name="이의 제기")).to_have_count(0)


async def test_csrf_and_another_subjects_session_are_refused(
    app: FastAPI,
    page: Page,
    context: BrowserContext,
    live_url: str,
    worker: Worker,
    gateway: RecordingServer,
    assert_accessible: AssertAccessible,
) -> None:
    await sign_in(page, worker, gateway)
    await start_request(page, "처리정지")
    await page.get_by_label("마케팅 및 이벤트 안내").check()
    request_id = await review_and_submit(page)

    # A POST without the form's token (same browser, same cookies) is refused with a page.
    refused = await context.request.post(f"{live_url}/privacy/requests/{request_id}/withdraw")
    assert refused.status == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "보안 확인 정보가 없거나 맞지 않습니다" in await refused.text()
    await page.reload()
    await expect(page.locator("[data-status]")).to_have_text("접수됨")

    # Another subject's valid session does not reach this subject's request.
    other = await make_subject(app, "+821099990000")
    token = other.headers["Authorization"].removeprefix("Bearer ")
    await context.clear_cookies()
    await context.add_cookies(
        [{"name": PRIVACY_COOKIE, "value": token, "domain": "127.0.0.1", "path": "/privacy"}]
    )
    await page.goto(f"/privacy/requests/{request_id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("페이지를 찾을 수 없습니다")
    await assert_accessible(page)
    await page.goto("/privacy/requests")
    await expect(page.get_by_text("아직 요청이 없습니다")).to_be_visible()

    # Signed out, the list asks to verify first.
    await page.get_by_role("button", name="로그아웃").click()
    await expect(page.get_by_role("status")).to_contain_text("로그아웃되었습니다")
    await page.goto("/privacy/requests")
    await expect(page.get_by_role("heading", level=1)).to_have_text("본인 확인이 필요합니다")
    await assert_accessible(page)


def page_routes() -> list[str]:
    """Every page (GET) of the privacy center, from the routers: a new page must be walked."""
    paths = set()
    for module in pkgutil.iter_modules(routers.__path__):
        if module.name.startswith("privacy"):
            router = importlib.import_module(f"app.routers.{module.name}").router
            paths |= {
                route.path
                for route in router.routes
                if isinstance(route, APIRoute) and "GET" in route.methods
            }
    return sorted(paths - {"/privacy"})  # a redirect to /privacy/


def route_of(url: str, routes: list[str]) -> str:
    path = urlsplit(url).path
    for route in routes:
        pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[a-z_]+\}", route))
        if re.fullmatch(pattern, path):
            return route
    raise AssertionError(f"no page route for {path}")


HANGUL = re.compile(r"[\uac00-\ud7a3]")


async def test_every_page_in_english_passes_axe(
    app: FastAPI,
    page: Page,
    worker: Worker,
    gateway: RecordingServer,
    assert_accessible: AssertAccessible,
) -> None:
    """The whole center in English, axe-core on every page and every error page a person meets;
    pages with nothing the person or staff wrote hold no Korean (no text left untranslated)."""
    routes = page_routes()
    # The strict CSP refuses inline script and style: a page that has any logs a violation.
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.on("pageerror", lambda error: violations.append(str(error)))
    seen: set[str] = set()
    kinds: set[str] = set()
    errors: set[str] = set()

    async def check(english_only: bool = True) -> None:
        await assert_accessible(page)
        assert await page.get_attribute("html", "lang") == "en"
        if english_only:
            main = await page.locator("main").inner_text()
            assert not HANGUL.search(main), f"Korean left on {page.url}:\n{main}"
        path = urlsplit(page.url).path
        if await page.locator(".panel-error").count():
            errors.add(await page.get_by_role("heading", level=1).inner_text())
            return
        seen.add(route_of(page.url, routes))
        if path.startswith("/privacy/requests/new/"):
            kinds.add(path.rsplit("/", 1)[1])

    await page.goto("/privacy/?lang=en")
    await check()
    await page.get_by_role("link", name="Verify your identity to start").click()
    await check()
    await page.get_by_label("Mobile number or e-mail address").fill(DEMO_PHONE)
    await page.get_by_role("button", name="Send the code").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Enter the code")
    await expect(page.get_by_text("010-****-0001")).to_be_visible()
    await check()
    code_page = page.url
    await page.get_by_role("link", name="한국어").click()  # the switch keeps the code page
    await expect(page).to_have_url(re.compile(r"/privacy/verify/[0-9a-f-]{36}\?lang=ko$"))
    await expect(page.get_by_text("010-****-0001")).to_be_visible()
    await page.get_by_role("link", name="English").click()
    assert page.url.split("?")[0] == code_page
    await worker.drain()
    assert len(gateway.requests("/sms")) == 1  # no second code for either
    await page.get_by_label("6-digit code").fill(sent_code(gateway))
    await page.get_by_role("button", name="Confirm").click()
    await expect(page).to_have_url(re.compile(r"/privacy/requests$"))
    await check()
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies[PRIVACY_COOKIE]
    assert (session["httpOnly"], session["sameSite"], session["secure"]) == (True, "Strict", True)
    assert session["path"] == "/privacy" and session["expires"] > 0  # short-lived, not forever
    assert (cookies["dsr_csrf"]["httpOnly"], cookies["dsr_csrf"]["sameSite"]) == (True, "Strict")

    await page.get_by_role("link", name="New request", exact=True).click()
    await check()
    # Access: form, check, submit.
    await page.get_by_role("link", name="Access", exact=True).click()
    await check()
    await page.get_by_role("button", name="Continue").click()
    await check()
    await page.get_by_role("button", name="Submit the request").click()
    await expect(page.get_by_role("status")).to_contain_text("We received your request")
    await check()
    access = urlsplit(page.url).path.rsplit("/", 1)[1]
    # Correction: the item, then the records that hold it, then an error to fix.
    await page.goto("/privacy/requests/new/correction")
    await check()
    await page.get_by_label("Address", exact=True).check()
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("group", name="Which record should we correct?")).to_be_visible()
    await check(english_only=False)  # each record's current (Korean) address
    await page.get_by_label("Address: the right value").fill("x")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("[data-error-summary]")).to_be_focused()
    await check(english_only=False)
    # Deletion: what the law keeps, an error, the check, submit.
    await page.goto("/privacy/requests/new/deletion")
    kept = page.locator("[data-retention]")
    await expect(kept).to_contain_text("Framework Act on National Taxes")
    await check()
    await page.get_by_label("Only the kinds I choose").check()
    await page.get_by_role("button", name="Continue").click()
    await check()
    await page.get_by_label("Contact details").check()
    await page.get_by_role("button", name="Continue").click()
    await check()
    await page.get_by_role("button", name="Submit the request").click()
    deletion = urlsplit(page.url).path.rsplit("/", 1)[1]
    # Suspension: an error, then the check.
    await page.goto("/privacy/requests/new/suspension")
    await check()
    await page.get_by_role("button", name="Continue").click()
    await check()
    await page.get_by_label("Customs clearance for import and export").check()
    await page.get_by_role("button", name="Continue").click()
    await check()
    # Consent withdrawal: submit, the same again (a duplicate), then withdraw the first.
    for _ in range(2):
        await page.goto("/privacy/requests/new/consent_withdrawal")
        await check()
        await page.get_by_label("Marketing and events (optional consent)").check()
        await page.get_by_role("button", name="Continue").click()
        await page.get_by_role("button", name="Submit the request").click()
        await check()
    consent = await first_request_id(page, "consent_withdrawal")
    await page.goto(f"/privacy/requests/{consent}")
    await page.get_by_role("link", name="Withdraw the request").click()
    await check()
    await page.get_by_role("button", name="Withdraw the request").click()
    await expect(page.locator("[data-status]")).to_have_text("Withdrawn")
    await check()

    # A refusal (decided by staff, in Korean): the decision, then an objection.
    await drive(app, deletion, "refused")
    await page.goto(f"/privacy/requests/{deletion}")
    await expect(page.locator("[data-decision]")).to_contain_text("PIPA Enforcement Decree")
    await check(english_only=False)  # the officer's explanation is theirs
    await page.get_by_role("link", name="Object to the decision").click()
    await check()
    await page.get_by_role("button", name="Submit the objection").click()
    await check()
    await page.get_by_label("Why you object").fill("I sent my ID to the support center.")
    await page.get_by_role("button", name="Submit the objection").click()
    await expect(page.get_by_text("reviewing your objection")).to_be_visible()

    # The access report, once the job has built it.
    await worker.drain()
    await page.goto(f"/privacy/requests/{access}")
    await check()
    await page.get_by_role("link", name="See the access report").click()
    await check(english_only=False)  # the person's own (Korean) data
    await page.goto("/privacy/requests")
    await check()

    # Error pages: not found, the CSRF refusal, signed out, the rate limit with its wait.
    await page.goto(f"/privacy/requests/{uuid.uuid4()}")
    await check()
    await page.goto("/privacy/requests")
    await page.locator("input[name=csrf_token]").evaluate_all(
        "inputs => inputs.forEach(input => { input.value = 'forged' })"
    )
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("We could not process that")
    await check()
    await page.goto("/privacy/requests")
    await page.get_by_role("button", name="Sign out").click()
    await check()
    await page.goto("/privacy/requests")
    await check()
    await page.goto("/privacy/verify")
    await page.get_by_label("Mobile number or e-mail address").fill(DEMO_PHONE)
    await page.get_by_role("button", name="Send the code").click()
    await expect(page.get_by_text(re.compile(r"Try again in \d+ (min|s)"))).to_be_visible()
    await check()

    assert violations == []
    assert seen == set(routes), set(routes) ^ seen
    assert kinds == set(KINDS)
    assert errors == {
        "Page not found",
        "You already have an open request of this type",
        "We could not process that",
        "Verify your identity first",
        "Too many requests",
    }


async def first_request_id(page: Page, kind: str) -> str:
    """The id of the signed-in subject's request of ``kind`` from the list page."""
    await page.goto("/privacy/requests")
    card = page.locator(f"[data-type='{kind}']").first
    request_id = await card.get_attribute("data-request-id")
    assert request_id
    return request_id
