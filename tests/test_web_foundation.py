"""The web foundation: security headers, CORS, CSRF, error pages, offline docs, catalogues."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse

from app.errors import DuplicateRequest, RateLimited
from app.fulfilment.reports.html import report_content_security_policy
from app.main import PUBLIC_API_PATHS
from app.security import Principal, TokenService
from app.web.csrf import CSRF_COOKIE
from app.web.deps import PagesDep, session_principal
from app.web.i18n import LOCALES, catalogue
from app.web.session import SessionCookie
from tests.support.lifecycle import CORRECTION, make_subject, staff

PROBE_SESSION = SessionCookie("dsr_probe", path="/console")
ProbePrincipal = Annotated[Principal, Depends(session_principal(PROBE_SESSION, kind="subject"))]


def add_probe_pages(app: FastAPI) -> None:
    """Page routes that exercise the shared pieces the way the page areas use them."""

    @app.get("/console/_probe", include_in_schema=False)
    async def form_page(request: Request, pages: PagesDep) -> HTMLResponse:
        form = pages.env.from_string(
            '{% import "macros/forms.html" as f %}'
            '<form method="post">{{ f.csrf(csrf_token) }}{{ f.input("name", "name", "Name", {}) }}'
            "</form>"
        )
        return HTMLResponse(form.render(csrf_token=request.state.csrf_token))

    @app.post("/console/_probe", include_in_schema=False)
    async def form_post(name: Annotated[str, Form()]) -> HTMLResponse:
        return HTMLResponse(f"<p>{len(name)}</p>")

    @app.post("/console/_probe/limited", include_in_schema=False)
    async def limited() -> None:
        raise RateLimited("slow down", retry_after=200)

    @app.post("/console/_probe/duplicate", include_in_schema=False)
    async def duplicate() -> None:
        raise DuplicateRequest("open one")

    @app.get("/console/_probe/me", include_in_schema=False)
    async def me(principal: ProbePrincipal) -> HTMLResponse:
        return HTMLResponse(f"<p>{principal.kind}</p>")

    @app.get("/console/_probe/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("secret detail")


@pytest.fixture
async def pages(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client over https (page cookies are Secure outside dev)."""
    add_probe_pages(app)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def csrf_field(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token field"
    return found.group(1)


# -- security headers ------------------------------------------------------------------------


async def test_security_headers_on_every_answer(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/v1/requests", "/privacy/nothing-here", "/static/css/site.css"):
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers["x-frame-options"] == "DENY", path


async def test_no_store_on_personal_api_answers_and_pages(client: httpx.AsyncClient) -> None:
    for path in ("/v1/requests", "/v1/staff/requests", "/v1/me", "/privacy/x"):
        response = await client.get(path)
        assert response.headers["cache-control"] == "no-store", path
    public = await client.get("/v1/refusal-grounds")
    assert public.status_code == 200
    assert "no-store" not in public.headers.get("cache-control", "")
    assert "no-store" not in (await client.get("/static/css/site.css")).headers.get(
        "cache-control", ""
    )


def assert_api_headers(response: httpx.Response, what: str) -> None:
    assert response.headers.get("cache-control") == "no-store", what
    assert response.headers.get("x-content-type-options") == "nosniff", what
    assert "default-src 'self'" in response.headers.get("content-security-policy", ""), what


async def test_every_api_answer_that_carries_data_is_no_store_nosniff_with_a_csp(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Each GET of the contract, answered for real (200 where the ids exist), plus the writes
    that answer with a body: the JSON access report, request details, the audit trail, every
    staff answer."""
    subject = await make_subject(app)
    created = await client.post("/v1/requests", json=CORRECTION, headers=subject.headers)
    assert created.status_code == 201
    assert_api_headers(created, "POST /v1/requests")
    request_id = created.json()["id"]
    officer = staff(app, "privacy_officer")
    app.state.settings = app.state.settings.model_copy(update={"allow_private_webhooks": True})
    registered = await client.post(
        "/v1/processors",
        json={"code": "hct", "name": "HCT", "nation": "TW", "webhook_url": "http://127.0.0.1:9/"},
        headers=officer,
    )
    assert registered.status_code == 201
    assert_api_headers(registered, "POST /v1/processors")  # it shows the secret once
    values = {"request_id": request_id, "code": "hct"}
    query = {"/v1/staff/export": {"from": "2026-11-01", "to": "2026-11-30"}}
    answered = []
    for template, operations in app.openapi()["paths"].items():
        if "get" not in operations or template in PUBLIC_API_PATHS:
            continue
        path = re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), template)
        headers = subject.headers if template.startswith(("/v1/requests", "/v1/me")) else officer
        response = await client.get(path, params=query.get(template), headers=headers)
        assert response.status_code < 500, (template, response.text)
        if template.startswith("/v1/"):
            assert_api_headers(response, template)
            answered.append((template, response.status_code))
    ok = {template for template, status in answered if status == 200}
    for must in (
        "/v1/requests/{request_id}",
        "/v1/staff/requests",
        "/v1/staff/requests/{request_id}",
        "/v1/audit",
        "/v1/deliveries",
        "/v1/processors/{code}",
        "/v1/staff/export",
    ):
        assert must in ok, (must, answered)
    # The JSON access report (a report not ready yet answers through the same middleware;
    # tests/test_access_flow.py checks the ready one's headers).
    report = await client.get(f"/v1/requests/{request_id}/report", headers=subject.headers)
    assert_api_headers(report, "report")


async def test_an_unhandled_error_carries_the_same_headers(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    @app.get("/v1/_probe/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("secret detail")

    response = await client.get("/v1/_probe/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret detail" not in response.text
    assert_api_headers(response, "500")
    assert response.headers["x-request-id"] == response.json()["request_id"]


async def test_partner_pages_are_no_store(client: httpx.AsyncClient) -> None:
    # The confirmation page names a partner's record references: never cached either.
    for path in ("/partner/", "/partner/confirm/x"):
        response = await client.get(path)
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["x-content-type-options"] == "nosniff", path


@pytest.mark.parametrize(
    "settings_overrides", [{"frame_ancestors": "'self' https://www.example.com"}]
)
async def test_frame_ancestors_from_the_setting(client: httpx.AsyncClient) -> None:
    response = await client.get("/privacy/x")
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://www.example.com" in csp
    assert "x-frame-options" not in response.headers  # it cannot express a list


# -- CORS ------------------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": "https://www.example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/requests", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in response.headers
    plain = await client.get("/v1/refusal-grounds", headers={"Origin": "https://www.example.com"})
    assert "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": ["https://www.example.com"]}])
async def test_cors_for_configured_origins(client: httpx.AsyncClient) -> None:
    preflight = await client.options("/v1/requests", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://www.example.com"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    other = await client.options(
        "/v1/requests", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    answer = await client.get("/v1/requests", headers={"Origin": "https://www.example.com"})
    assert answer.headers["access-control-allow-origin"] == "https://www.example.com"
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()


def test_cors_origins_must_be_origins(settings: Any) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        type(settings)(**{**settings.model_dump(), "cors_origins": ["https://x.example/path"]})


# -- CSRF ------------------------------------------------------------------------------------


async def test_a_page_sets_the_csrf_cookie_and_field(pages: httpx.AsyncClient) -> None:
    response = await pages.get("/console/_probe")
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert csrf_field(response.text)


async def test_post_without_the_token_is_refused_with_a_page(pages: httpx.AsyncClient) -> None:
    await pages.get("/console/_probe")  # the browser holds the cookie
    response = await pages.post("/console/_probe", data={"name": "홍길동"})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="ko">' in response.text
    assert "보안 확인" in response.text
    assert "홍길동" not in response.text


async def test_post_with_a_wrong_or_foreign_token_is_refused(pages: httpx.AsyncClient) -> None:
    first = csrf_field((await pages.get("/console/_probe")).text)
    # Another browser's token does not fit this browser's cookie.
    transport = pages._transport
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as other:
        await other.get("/console/_probe")
        response = await other.post("/console/_probe", data={"name": "x", "csrf_token": first})
        assert response.status_code == 403
    wrong = await pages.post("/console/_probe", data={"name": "x", "csrf_token": "A" * 43})
    assert wrong.status_code == 403


async def test_post_without_the_cookie_is_refused(pages: httpx.AsyncClient) -> None:
    token = csrf_field((await pages.get("/console/_probe")).text)
    pages.cookies.clear()
    response = await pages.post("/console/_probe", data={"name": "x", "csrf_token": token})
    assert response.status_code == 403


async def test_post_with_the_token_goes_through(pages: httpx.AsyncClient) -> None:
    token = csrf_field((await pages.get("/console/_probe")).text)
    response = await pages.post("/console/_probe", data={"name": "홍길동", "csrf_token": token})
    assert response.status_code == 200
    assert response.text == "<p>3</p>"
    by_header = await pages.post(
        "/console/_probe", data={"name": "ab"}, headers={"X-CSRF-Token": token}
    )
    assert by_header.text == "<p>2</p>"


async def test_the_api_is_not_subject_to_page_csrf(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/verifications", json={"channel": "sms", "destination": "010-1234-5678"}
    )
    assert response.status_code != 403


# -- error pages -----------------------------------------------------------------------------


async def test_page_errors_are_pages_in_the_users_language(pages: httpx.AsyncClient) -> None:
    missing = await pages.get("/privacy/no-such-page")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert '<html lang="ko">' in missing.text and "페이지를 찾을 수 없습니다" in missing.text
    english = await pages.get("/privacy/no-such-page?lang=en")
    assert '<html lang="en">' in english.text and "Page not found" in english.text
    # The choice is remembered.
    again = await pages.get("/privacy/another")
    assert '<html lang="en">' in again.text


async def test_rate_limit_page_names_the_wait(pages: httpx.AsyncClient) -> None:
    token = csrf_field((await pages.get("/console/_probe")).text)
    response = await pages.post("/console/_probe/limited", data={"csrf_token": token})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "200"
    assert "3분 20초 후에 다시 시도해 주세요" in response.text
    duplicate = await pages.post("/console/_probe/duplicate", data={"csrf_token": token})
    assert duplicate.status_code == 409
    assert "이미 처리 중인 같은 종류의 요청" in duplicate.text


async def test_unhandled_errors_are_pages_without_details(pages: httpx.AsyncClient) -> None:
    response = await pages.get("/console/_probe/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "secret detail" not in response.text and "Traceback" not in response.text


async def test_session_required_and_expired_pages(
    pages: httpx.AsyncClient, tokens: TokenService, clock: Any
) -> None:
    missing = await pages.get("/console/_probe/me")
    assert missing.status_code == 401
    assert "www-authenticate" not in missing.headers
    # The probes live under /console: the staff's words (a subject's area says "본인 확인").
    assert "로그인이 필요합니다" in missing.text
    expired = tokens.issue_subject_token(
        blind_index="b" * 43,
        identifier_kinds=["phone"],
        now=clock.now() - timedelta(hours=2),
        ttl=timedelta(minutes=30),
    )
    response = await pages.get(
        "/console/_probe/me", headers={"Cookie": f"{PROBE_SESSION.name}={expired}"}
    )
    assert response.status_code == 401
    assert "로그인 시간이 지났습니다" in response.text
    fresh = tokens.issue_subject_token(
        blind_index="b" * 43, identifier_kinds=["phone"], now=clock.now(), ttl=timedelta(minutes=30)
    )
    signed_in = await pages.get(
        "/console/_probe/me", headers={"Cookie": f"{PROBE_SESSION.name}={fresh}"}
    )
    assert signed_in.text == "<p>subject</p>"


async def test_the_api_keeps_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


# -- offline docs and catalogues -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_docs_reference_no_external_host(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert not re.search(r"(src|href)=\"(https?:)?//", response.text), response.text
    assert "<script>" not in response.text  # no inline script: the strict CSP holds
    for asset in re.findall(r"(?:src|href)=\"(/[^\"]+)\"", response.text):
        assert (await client.get(asset)).status_code == 200, asset


async def test_swagger_bundle_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/vendor/swagger-ui-bundle.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]


def test_catalogues_have_the_same_keys() -> None:
    keys = {lang: set(catalogue(lang)) for lang in LOCALES}
    assert keys["ko"] == keys["en"], keys["ko"] ^ keys["en"]


def test_the_report_page_policy_allows_only_its_own_style() -> None:
    page = "<html><style>body { color: red; }</style></html>"
    policy = report_content_security_policy(page)
    assert "default-src 'none'" in policy
    assert "style-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert "script-src" not in policy  # falls back to default-src 'none'
