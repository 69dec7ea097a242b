"""The privacy center in a real browser: every right exercised by the demo subject, Korean first.

Each test serves the app on 127.0.0.1 with the demo data set and its data map, codes arriving
at the loopback SMS gateway (the worker is drained in the test to deliver them), and axe-core
checking every page it visits.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.async_api import BrowserContext, Page, expect

from app.clock import FrozenClock
from app.datamap.connectors.postgres import connect
from app.demo.load import demo_datamap_text, drop_demo, load_demo
from app.outbox.worker import Worker
from tests.browser.conftest import ARTIFACTS, AssertAccessible, save_screenshots, sent_code
from tests.conftest import FROZEN_AT
from tests.support.lifecycle import drive, make_subject
from tests.support.servers import RecordingServer

DEMO_PHONE = "010-5555-0001"
PRIVACY_COOKIE = "dsr_privacy"


@pytest.fixture
async def demo(database_url: str) -> AsyncIterator[str]:
    conn = await connect(database_url)
    try:
        await load_demo(conn, subjects=3, records_per_subject=2, now=FROZEN_AT, reset=True)
        yield database_url
    finally:
        await drop_demo(conn)
        await conn.close()


@pytest.fixture
def settings_overrides(demo: str, tmp_path: Path, gateway: RecordingServer) -> dict[str, Any]:
    datamap = tmp_path / "datamap.yaml"
    datamap.write_text(demo_datamap_text(), encoding="utf-8")
    return {
        "datamap_path": datamap,
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "gateway_token": "gw-secret",
    }


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
