"""The support console in Chromium: an agent finds a caller by phone and proposes a partial
refusal, an officer decides it, a dead delivery is replayed, and an agent meets no officer-only
action, on screen or by URL. Every page visited is checked with axe-core and photographed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, expect

from app.clock import FrozenClock
from app.db import Database
from app.outbox import queue
from app.outbox.worker import Worker
from tests.browser.conftest import AssertAccessible, save_screenshots
from tests.support.lifecycle import staff
from tests.support.servers import RecordingServer
from tests.support.webhooks import notify

CALLER = "010-2468-1357"
MONTH = "?from=2026-11-01&to=2026-11-30"


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "gateway_token": "gw-secret",
        "auto_approve_access": False,
        "allow_private_webhooks": True,
        "cookie_secure": False,  # http://127.0.0.1 in the tests
    }


async def phone_request(client: httpx.AsyncClient, app: FastAPI, phone: str = CALLER) -> str:
    response = await client.post(
        "/v1/staff/requests",
        json={
            "request": {"type": "deletion", "categories": ["contact"]},
            "identifiers": {"phone": phone},
            "intake_channel": "phone",
            "verification": {"method": "agent", "check": "callback_to_number_on_record"},
        },
        headers=staff(app, "support_agent", sub="intake-desk"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def sign_in(page: Page, role_label: str, user: str, check: Any = None) -> None:
    await page.goto("/console/sign-in")
    await expect(page.locator(".dev-banner")).to_be_visible()
    if check:
        await check(page)
    await page.get_by_label("사용자 ID").fill(user)
    await page.get_by_label(role_label, exact=True).check()
    await page.get_by_role("button", name="개발용으로 로그인").click()
    await expect(page.get_by_role("heading", name="요청 목록", level=1)).to_be_visible()


async def test_agent_finds_a_caller_proposes_and_an_officer_decides(
    app: FastAPI,
    client: httpx.AsyncClient,
    browser: Browser,
    live_url: str,
    page: Page,
    assert_accessible: AssertAccessible,
) -> None:
    clock: FrozenClock = app.state.clock
    now = clock.now()
    clock.set(now - timedelta(days=12))
    late = await phone_request(client, app, phone="010-2468-0000")
    clock.set(now)
    late_reference = late.replace("-", "")[:8].upper()
    request_id = await phone_request(client, app)
    reference = request_id.replace("-", "")[:8].upper()

    await sign_in(page, "상담원", "kim", check=assert_accessible)
    await assert_accessible(page)
    await save_screenshots(page, "console-queue-agent")
    # The caller reads out their number; the agent finds the request by it (in any format).
    await page.get_by_label("찾는 방법").select_option("phone")
    await page.get_by_label("찾을 값").fill("01024681357")
    await page.get_by_role("button", name="찾기").click()
    await expect(page.get_by_role("status")).to_have_text("전화번호 010-****-1357: 검색 결과 1건")
    assert "01024681357" not in page.url
    await assert_accessible(page)
    await page.get_by_role("link", name=reference).click()

    await expect(page.get_by_role("heading", name=f"요청 {reference}")).to_be_visible()
    for officer_only in (
        "전체 거절",
        "처리기한 연기 (열람 요청)",
        "일부 거절하고 승인",
        "담당자 지정",
    ):
        await expect(page.get_by_role("heading", name=officer_only)).to_have_count(0)
    await page.get_by_role("button", name="내가 담당하기").click()
    await expect(page.get_by_role("status")).to_have_text("담당자로 지정되었습니다.")
    await page.get_by_role("button", name="검토 시작").click()
    proposal = page.locator("form[action$='/propose']")
    await proposal.get_by_label("주소", exact=True).check()
    await proposal.get_by_label("법적 근거").select_option("pipa_36_1_proviso")
    # Sent without the explanation the subject will read: the form comes back to complete.
    await proposal.get_by_role("button", name="거절 제안하기").click()
    summary = page.get_by_role("alert")
    await expect(summary).to_contain_text("정보주체에게 보낼 설명을 적어 주세요")
    await assert_accessible(page)
    await save_screenshots(page, "console-request-agent-form-error")
    proposal = page.locator("form[action$='/propose']")
    await expect(proposal.get_by_label("주소", exact=True)).to_be_checked()
    await proposal.get_by_label("정보주체에게 보낼 설명").fill(
        "배송 주소는 다른 법령이 보관을 정하고 있어 삭제할 수 없습니다."
    )
    await proposal.get_by_role("button", name="거절 제안하기").click()
    await expect(page.get_by_role("status")).to_have_text(
        "거절을 제안했습니다. 보호책임자가 결정합니다."
    )
    await assert_accessible(page)
    await save_screenshots(page, "console-request-agent-proposed")
    # Officer-only pages are not reachable by URL either, nor officer-only actions: a form
    # posted by hand to refuse is refused, and the request is as it was.
    for path in ("/console/processors", "/console/statistics", "/console/export.csv" + MONTH):
        response = await page.goto(path)
        assert response is not None and response.status == 403, path
    await expect(page.get_by_role("heading", name="권한이 없습니다")).to_be_visible()
    await assert_accessible(page)
    await page.goto(f"/console/requests/{request_id}")
    token = await page.locator("input[name=csrf_token]").first.input_value()
    forged = await page.request.post(
        f"/console/requests/{request_id}/accept-proposal", form={"csrf_token": token}
    )
    assert forged.status == 403
    await page.reload()
    pending = page.get_by_role("heading", name="거절 제안 (보호책임자 결정 대기)")
    await expect(pending).to_be_visible()

    officer_context: BrowserContext = await browser.new_context(
        base_url=live_url, viewport={"width": 1280, "height": 900}, locale="ko-KR"
    )
    officer = await officer_context.new_page()
    try:
        await sign_in(officer, "개인정보 보호책임자", "park")
        await officer.goto(f"/console/requests/{request_id}")
        await expect(officer.get_by_role("heading", name="거절 제안 결정")).to_be_visible()
        await assert_accessible(officer)
        await save_screenshots(officer, "console-request-officer")
        await officer.get_by_role("button", name="제안대로 결정").click()
        await expect(officer.get_by_role("status")).to_have_text("제안대로 결정했습니다.")
        await expect(officer.locator("dd", has_text="처리 중")).to_be_visible()
        # What is overdue, from the queue's card.
        await officer.goto("/console/")
        await officer.get_by_role("link", name="기한 경과").first.click()
        await expect(officer.get_by_role("link", name=late_reference)).to_be_visible()
        await expect(officer.get_by_role("link", name=reference)).to_have_count(0)
        await assert_accessible(officer)
        await save_screenshots(officer, "console-queue-overdue")
        # The month's figures and its export.
        await officer.goto("/console/statistics")
        await expect(
            officer.get_by_role("heading", name="통계와 내보내기", level=1)
        ).to_be_visible()
        await officer.get_by_role("link", name="이번 달").click()
        async with officer.expect_download() as download_info:
            await officer.get_by_role("link", name="CSV 내보내기 (개인정보 제외)").click()
        download = await download_info.value
        assert download.suggested_filename == "dsr-requests-2026-11-01-2026-11-26.csv"
        exported = Path(await download.path()).read_text(encoding="utf-8-sig")
        assert reference in exported and late_reference in exported
        assert "+8210" not in exported
        await assert_accessible(officer)
        await save_screenshots(officer, "console-statistics")
        await officer.goto("/console/intake")
        await expect(officer.get_by_role("heading", name="전화·방문 접수", level=1)).to_be_visible()
        await assert_accessible(officer)
        await save_screenshots(officer, "console-intake")
        await officer.goto(f"/console/requests/{request_id}?lang=en")
        await expect(officer.get_by_role("heading", name=f"Request {reference}")).to_be_visible()
        assert await officer.get_attribute("html", "lang") == "en"
        await assert_accessible(officer)
        await officer.goto("/console/?lang=en")
        await expect(officer.get_by_role("heading", level=1)).to_have_text("Requests")
        await assert_accessible(officer)
    finally:
        await officer_context.close()


async def test_the_processors_page_replays_a_dead_delivery(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Database,
    worker: Worker,
    page: Page,
    assert_accessible: AssertAccessible,
) -> None:
    with RecordingServer() as receiver:
        registered = await client.post(
            "/v1/processors",
            json={
                "code": "hct",
                "name": "HCT",
                "nation": "TW",
                "webhook_url": f"{receiver.url}/hook",
            },
            headers=staff(app, "privacy_officer", sub="park"),
        )
        assert registered.status_code == 201, registered.text
        message_id = await notify(db, worker, code="hct")
        assert message_id is not None
        async with db.transaction() as session:  # its retries spent: dead, as after three days
            await queue.mark_dead(
                session, message_id=message_id, now=worker.ctx.clock.now(), error="HTTP 503"
            )

        await sign_in(page, "관리자", "ops")
        await page.get_by_role("link", name="수탁사", exact=True).click()
        await expect(page.get_by_role("heading", name="전송 실패한 통지")).to_be_visible()
        await assert_accessible(page)
        await save_screenshots(page, "console-processors")
        await page.get_by_role("button", name="hct에 personal_data.corrected 다시 보내기").click()
        await expect(page.get_by_role("status")).to_have_text("다시 보내기로 했습니다.")
        await expect(page.get_by_text("전송 실패한 통지가 없습니다.")).to_be_visible()
        await worker.drain()
        assert [item.path for item in receiver.requests()] == ["/hook"]
