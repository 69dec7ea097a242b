"""The partner's confirmation page in Chromium: the link from the e-mail, the answer, the error
when a reason is missing; English for a Japanese carrier, Korean for a Korean one; checked with
axe-core, without sideways scrolling on a phone, and photographed."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from app.db import Database
from app.outbox.worker import Worker
from app.webhooks.signing import webhook_id
from tests.browser.conftest import AssertAccessible, save_screenshots
from tests.support.servers import RecordingServer
from tests.support.webhooks import notify

LINK = re.compile(r"https://dsr\.example(/partner/confirm/\S+)")
RECORDS = {
    "records": [
        {"reference": "KUR0000000123", "items": {"name": "김하람", "phone": "+821055550009"}},
        {"reference": "KUR0000000456", "items": {"name": "김하람"}},
    ]
}


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "public_base_url": "https://dsr.example",
        "cookie_secure": False,  # http://127.0.0.1 in the tests
    }


async def emailed_link(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
    *,
    code: str,
    nation: str,
) -> tuple[str, str]:
    """Register an e-mail partner, tell it of a correction; (link path, notice reference)."""
    address = f"dsr@{code}.partner.example"
    registered = await client.post(
        "/v1/processors",
        json={"code": code, "name": code.title(), "nation": nation, "channel": "email"}
        | {"email": address},
        headers=staff_headers("privacy_officer"),
    )
    assert registered.status_code == 201, registered.text
    message_id = await notify(db, worker, code=code, data=RECORDS)
    assert message_id is not None
    await worker.drain()
    [mail] = [item.json() for item in gateway.requests("/email") if item.json()["to"] == address]
    found = LINK.search(mail["body"])
    assert found is not None, mail["body"]
    return found.group(1), webhook_id(message_id)


async def no_sideways_scroll(page: Page) -> None:
    await page.set_viewport_size({"width": 390, "height": 900})
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    await page.set_viewport_size({"width": 1280, "height": 900})


async def test_a_partner_answers_on_the_page_from_its_email(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
    page: Page,
    assert_accessible: AssertAccessible,
) -> None:
    path, reference = await emailed_link(
        client, staff_headers, db, worker, gateway, code="kuroneko-mail", nation="JP"
    )
    assert path.endswith("?lang=en")
    await page.goto(path)
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Confirm our notice")
    await expect(page).to_have_title(re.compile(f"Confirm notice {reference}"))
    await expect(page.locator(f'[data-notice="{reference}"] code').first).to_have_text(reference)
    await expect(page.get_by_text("KUR0000000456")).to_be_visible()
    await expect(page.get_by_text("김하람")).to_have_count(0)  # references, never the values
    await assert_accessible(page)
    await no_sideways_scroll(page)
    await save_screenshots(page, "partner-confirm-en")

    # "Cannot apply" without a reason: the form says what is missing, nothing is recorded.
    await page.get_by_label("Cannot apply").check()
    await page.get_by_role("button", name="Send my answer").click()
    await expect(page.get_by_role("link", name="Say why you cannot apply it")).to_be_visible()
    await assert_accessible(page)
    await no_sideways_scroll(page)
    await save_screenshots(page, "partner-confirm-en-error")
    delivery = await client.get(
        f"/v1/deliveries/{reference[4:]}", headers=staff_headers("privacy_officer")
    )
    assert delivery.status_code == 200 and delivery.json()["acknowledgement"] is None

    await page.get_by_label("Reason").fill("Customs law: we keep waybills for 5 years")
    await page.get_by_role("button", name="Send my answer").click()
    await expect(page.get_by_role("status")).to_contain_text(
        f"We recorded that you cannot apply notice {reference}"
    )
    await assert_accessible(page)
    await save_screenshots(page, "partner-confirm-en-done")
    delivery = await client.get(
        f"/v1/deliveries/{reference[4:]}", headers=staff_headers("privacy_officer")
    )
    assert delivery.json()["acknowledgement"]["status"] == "rejected"

    # The link again: refused on a page of its own.
    await page.goto(path)
    await expect(page.get_by_role("heading", level=1)).not_to_have_text("Confirm our notice")


async def test_a_korean_partner_gets_the_page_in_korean(
    client: httpx.AsyncClient,
    staff_headers: Any,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
    page: Page,
    assert_accessible: AssertAccessible,
) -> None:
    path, reference = await emailed_link(
        client, staff_headers, db, worker, gateway, code="hanjin", nation="KR"
    )
    assert "?" not in path
    await page.goto(path)
    await expect(page.locator("html")).to_have_attribute("lang", "ko")
    await expect(page.get_by_role("heading", level=1)).to_have_text("통지 반영 여부 확인")
    await expect(page).to_have_title(re.compile(f"통지 {reference} 확인"))
    await assert_accessible(page)
    await no_sideways_scroll(page)
    await save_screenshots(page, "partner-confirm-ko")
    await page.get_by_label("반영했습니다").check()
    await page.get_by_role("button", name="답변 보내기").click()
    await expect(page.get_by_role("status")).to_contain_text("반영하셨다고 기록했습니다")
