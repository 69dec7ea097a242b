"""Browser tests: the real app served by uvicorn on 127.0.0.1, driven by Debian's Chromium.

Playwright's own browser download cannot run here, so the tests launch the system Chromium
(``DSR_CHROMIUM``, default ``/usr/bin/chromium``). Without it the tests are skipped, except in
CI (``CI=true``), where a missing browser is a failure. Screenshots of a failed test's page are
saved at 390 px and 1280 px under ``DSR_BROWSER_ARTIFACTS`` (default ``.browser-artifacts/``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from axe_playwright_python.async_playwright import Axe
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from tests.support.servers import RecordingServer

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("DSR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("DSR_BROWSER_ARTIFACTS", ".browser-artifacts"))
WIDTHS = (390, 1280)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    """Browser tests send codes through the loopback gateway; override to add more."""
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "gateway_token": "gw-secret",
    }


@pytest.fixture
async def live_url(app: FastAPI) -> AsyncIterator[str]:
    """The test's app (lifespan already started) served over real HTTP on 127.0.0.1."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}: .ci/run installs it (apt chromium)")
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser, live_url: str) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(
        base_url=live_url, viewport={"width": 1280, "height": 900}, locale="ko-KR"
    )
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A page on the live app; on failure its screenshots are kept as artifacts."""
    tab = await context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not tab.is_closed():
        try:
            await save_screenshots(tab, f"FAILED-{request.node.name}")
        except PlaywrightError as exc:  # a screenshot that fails must not hide the failure
            warnings.warn(f"no screenshot of {request.node.name}: {exc}", stacklevel=1)


async def save_screenshots(page: Page, name: str) -> list[Path]:
    """Full-page PNGs of the current page at phone (390 px) and desktop (1280 px) widths."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    size = page.viewport_size or {"width": 1280, "height": 900}
    paths = []
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        path = ARTIFACTS / f"{safe}-{width}.png"
        await page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    await page.set_viewport_size(size)
    return paths


@pytest.fixture(scope="session")
def axe() -> Axe:
    return Axe()


AssertAccessible = Callable[[Page], Awaitable[None]]


@pytest.fixture
def assert_accessible(axe: Axe) -> AssertAccessible:
    """Run axe-core (bundled with axe-playwright-python) on the page: no serious or critical."""

    async def check(page: Page) -> None:
        results = await axe.run(page)
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v.get("impact") in {"serious", "critical"}
        ]
        assert not bad, f"axe on {page.url}:\n" + "\n".join(bad)

    return check


def sent_code(gateway: RecordingServer, path: str = "/sms") -> str:
    """The one-time code of the last message the loopback gateway received on ``path``."""
    code = gateway.requests(path)[-1].json()["variables"]["code"]
    assert isinstance(code, str)
    return code
