"""/docs and /redoc in a real browser with every address outside 127.0.0.1 refused: they render
the API (not a blank page) from the service's own assets, and ask the internet for nothing."""

from __future__ import annotations

import pytest
from playwright.async_api import BrowserContext, Page, Route, expect


@pytest.fixture
async def offline(context: BrowserContext, live_url: str) -> list[str]:
    """Refuse (and record) every request that leaves the service, as on an offline machine."""
    outside: list[str] = []

    async def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(live_url) or url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            outside.append(url)
            await route.abort()

    await context.route("**/*", guard)
    return outside


async def test_swagger_ui_renders_offline(page: Page, offline: list[str]) -> None:
    await page.goto("/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("qx-dsr", timeout=30_000)
    operation = page.locator(".opblock-summary-path", has_text="/v1/verifications").first
    await expect(operation).to_be_visible()
    assert offline == []


async def test_redoc_renders_offline(page: Page, offline: list[str]) -> None:
    await page.goto("/redoc")
    # ReDoc parses the whole contract in the browser: seconds on a busy two-core machine.
    await expect(page.get_by_role("heading", level=1).first).to_contain_text(
        "qx-dsr", timeout=60_000
    )
    await expect(page.get_by_text("/v1/verifications").first).to_be_attached()
    assert offline == []
