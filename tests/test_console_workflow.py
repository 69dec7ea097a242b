"""The console as an agent and an officer use it all day: a form the agent can fix comes back
with its error and what was typed, the queue's views list what their cards count, a search says
what it looked for (masked), errors speak to staff, and the month's figures are one click away."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.clock import FrozenClock
from app.db import Database
from tests.support.lifecycle import AGENT, OFFICER, drive, make_subject, new_request, staff


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auto_approve_access": False}


@pytest.fixture
async def browser_like(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def csrf_of(html: str) -> str:
    return html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


async def sign_in(client: httpx.AsyncClient, role: str, user: str) -> str:
    page = await client.get("/console/sign-in")
    response = await client.post(
        "/console/dev-sign-in", data={"csrf_token": csrf_of(page.text), "role": role, "user": user}
    )
    assert response.status_code == 303, response.text
    return csrf_of((await client.get("/console/")).text)


async def value_of(db: Database, sql: str, **params: Any) -> Any:
    async with db.sessionmaker() as session:
        return (await session.execute(sa.text(sql), params)).scalar_one()


async def proposal_of(db: Database, request_id: str) -> Any:
    return await value_of(db, "SELECT proposal FROM dsr_request WHERE id = :id", id=request_id)


async def notes_of(db: Database, request_id: str) -> int:
    return await value_of(
        db, "SELECT count(*) FROM dsr_request_note WHERE request_id = :id", id=request_id
    )


async def test_a_refusal_without_an_explanation_comes_back_to_be_completed(
    app: FastAPI, browser_like: httpx.AsyncClient, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app, "+821091110001")
    request_id = await new_request(client, subject, "suspension")
    await drive(app, request_id, "in_review")
    token = await sign_in(browser_like, "support_agent", "kim")
    blank = await browser_like.post(
        f"/console/requests/{request_id}/propose",
        data={"csrf_token": token, "items": ["marketing"], "ground": "pipa_37_2_1", "text": "  "},
    )
    assert blank.status_code == 422
    assert "error-summary" in blank.text and 'href="#propose-text"' in blank.text
    assert 'aria-invalid="true"' in blank.text
    # What was chosen is still chosen.
    assert re.search(r'value="marketing" checked', blank.text)
    assert re.search(r'value="pipa_37_2_1" selected', blank.text)
    assert await proposal_of(db, request_id) is None

    done = await browser_like.post(
        f"/console/requests/{request_id}/propose",
        data={
            "csrf_token": token,
            "items": ["marketing"],
            "ground": "pipa_37_2_1",
            "text": "다른 법률이 정한 의무 때문에 정지할 수 없습니다.",
        },
    )
    assert done.status_code == 303
    assert (await proposal_of(db, request_id))["refused_items"] == [
        {"item": "marketing", "ground": "pipa_37_2_1"}
    ]
    # An empty note is the same: back with its error, nothing written.
    note = await browser_like.post(
        f"/console/requests/{request_id}/note", data={"csrf_token": token, "text": ""}
    )
    assert note.status_code == 422 and 'href="#note-text"' in note.text


async def test_the_forms_hold_the_apis_lengths(
    app: FastAPI, browser_like: httpx.AsyncClient, client: httpx.AsyncClient, db: Database
) -> None:
    """A note of 4,000 characters and an explanation of 2,000, as the API: one more comes back
    to be shortened, in the staff member's language, with nothing written."""
    subject = await make_subject(app, "+821091110009")
    request_id = await new_request(client, subject, "suspension")
    await drive(app, request_id, "in_review")
    token = await sign_in(browser_like, "support_agent", "kim")

    too_long = await browser_like.post(
        f"/console/requests/{request_id}/note", data={"csrf_token": token, "text": "메" * 4001}
    )
    assert too_long.status_code == 422 and 'href="#note-text"' in too_long.text
    assert "4,000자까지 적을 수 있습니다. 지금 4,001자입니다." in too_long.text
    assert await notes_of(db, request_id) == 0
    longest = await browser_like.post(
        f"/console/requests/{request_id}/note", data={"csrf_token": token, "text": "메" * 4000}
    )
    assert longest.status_code == 303
    assert await notes_of(db, request_id) == 1

    browser_like.cookies.set("dsr_lang", "en")
    explained = await browser_like.post(
        f"/console/requests/{request_id}/propose",
        data={
            "csrf_token": token,
            "items": ["marketing"],
            "ground": "pipa_37_2_1",
            "text": "x" * 2001,
        },
    )
    assert explained.status_code == 422 and 'href="#propose-text"' in explained.text
    assert "Up to 2,000 characters; this is 2,001." in explained.text
    assert await proposal_of(db, request_id) is None


async def test_no_part_ticked_proposes_refusing_the_whole_request(
    app: FastAPI, browser_like: httpx.AsyncClient, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app, "+821091110002")
    request_id = await new_request(client, subject, "suspension")
    await drive(app, request_id, "in_review")
    token = await sign_in(browser_like, "support_agent", "kim")
    page = await browser_like.get(f"/console/requests/{request_id}")
    assert "항목을 고르지 않으면 요청 전체의 거절을 제안합니다" in page.text
    done = await browser_like.post(
        f"/console/requests/{request_id}/propose",
        data={"csrf_token": token, "ground": "identity_not_verified", "text": "확인 불가"},
    )
    assert done.status_code == 303
    proposal = await proposal_of(db, request_id)
    assert (proposal["ground"], proposal["refused_items"]) == ("identity_not_verified", [])


async def test_the_services_refuse_a_blank_explanation_whoever_calls(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, "+821091110003")
    request_id = await new_request(client, subject, "access")
    await drive(app, request_id, "in_review")
    agent, officer = staff(app, *AGENT, sub="kim"), staff(app, *OFFICER, sub="park")
    for path, body, headers in (
        ("propose-refusal", {"ground": "identity_not_verified", "explanation": " "}, agent),
        ("extend", {"reason": "   ", "new_due_at": "2026-12-10"}, officer),
    ):
        response = await client.post(
            f"/v1/staff/requests/{request_id}/{path}", json=body, headers=headers
        )
        assert response.status_code == 422, (path, response.text)
        assert response.json()["code"] == "validation-failed"
    detail = (await client.get(f"/v1/staff/requests/{request_id}", headers=officer)).json()
    assert detail["proposal"] is None and detail["extensions"] == 0


async def test_an_officer_deciding_at_the_console_needs_an_explanation_and_a_day(
    app: FastAPI, browser_like: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, "+821091110004")
    request_id = await new_request(client, subject, "access")
    await drive(app, request_id, "in_review")
    token = await sign_in(browser_like, "privacy_officer", "park")
    no_day = await browser_like.post(
        f"/console/requests/{request_id}/extend",
        data={"csrf_token": token, "new_due": "", "text": "자료 수집 중"},
    )
    assert no_day.status_code == 422 and 'href="#extend-date"' in no_day.text
    assert "자료 수집 중" in no_day.text  # the reason typed is kept
    refused = await browser_like.post(
        f"/console/requests/{request_id}/refuse",
        data={"csrf_token": token, "ground": "identity_not_verified", "text": ""},
    )
    assert refused.status_code == 422 and 'href="#refuse-text"' in refused.text
    # An action's address opened as a page goes to the request, and does nothing.
    opened = await browser_like.get(f"/console/requests/{request_id}/refuse")
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/console/requests/{request_id}"


async def test_a_failed_action_says_so_in_staff_words_and_leads_back_to_the_request(
    app: FastAPI, browser_like: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, "+821091110005")
    request_id = await new_request(client, subject, "deletion")
    await client.post(
        f"/v1/staff/requests/{request_id}/take", headers=staff(app, *AGENT, sub="lee")
    )
    token = await sign_in(browser_like, "support_agent", "kim")
    taken = await browser_like.post(
        f"/console/requests/{request_id}/take", data={"csrf_token": token}
    )
    assert taken.status_code == 409
    assert "다른 직원이 이미 담당하고 있거나" in taken.text
    assert f'href="/console/requests/{request_id}"' in taken.text

    browser_like.cookies.clear()
    signed_out = await browser_like.get("/console/")
    assert signed_out.status_code == 401
    assert "로그인이 필요합니다" in signed_out.text and 'href="/console/sign-in"' in signed_out.text
    assert "본인 확인" not in signed_out.text  # the subjects' words, not the staff's


async def test_a_search_says_what_it_looked_for_masked_and_a_bad_number_is_shown_as_such(
    app: FastAPI,
    browser_like: httpx.AsyncClient,
    client: httpx.AsyncClient,
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    subject = await make_subject(app, "+821091110006")
    request_id = await new_request(client, subject, "deletion")
    token = await sign_in(browser_like, "support_agent", "kim")
    found = await browser_like.post(
        "/console/search", data={"csrf_token": token, "kind": "phone", "value": "010-9111-0006"}
    )
    assert found.status_code == 200
    assert "전화번호 010-****-0006: 검색 결과 1건" in found.text
    assert f"/console/requests/{request_id}" in found.text
    assert "9111" not in found.text  # the number is never shown back whole
    assert '<option value="phone" selected>' in found.text
    async with db.sessionmaker() as session:
        searches = (
            (
                await session.execute(
                    sa.text(
                        "SELECT details::text FROM audit_entry WHERE action = 'requests.listed' "
                        "AND details->'filters' ? 'search'"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert searches and all('"search": ["phone"]' in details for details in searches)
    assert not any("9111" in details for details in searches)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "9111-0006" not in logged and "91110006" not in logged

    bad = await browser_like.post(
        "/console/search", data={"csrf_token": token, "kind": "phone", "value": "010-77"}
    )
    assert bad.status_code == 422 and 'href="#search-value"' in bad.text
    assert "010-77" not in bad.text
    bad_ref = await browser_like.post(
        "/console/search", data={"csrf_token": token, "kind": "reference", "value": "XYZ"}
    )
    assert bad_ref.status_code == 422 and '<option value="reference" selected>' in bad_ref.text
    # The language switch of a result page asks for the search by GET: the queue.
    again = await browser_like.get("/console/search?lang=en")
    assert again.status_code == 303 and again.headers["location"] == "/console/"


def references(html: str) -> set[str]:
    return set(re.findall(r'/console/requests/([0-9a-f-]{36})"', html))


async def test_each_sla_card_opens_the_requests_it_counts(
    app: FastAPI, browser_like: httpx.AsyncClient, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    start = clock.now()
    clock.set(start - timedelta(days=11))  # overdue now
    late = await new_request(client, await make_subject(app, "+821091110011"), "deletion")
    clock.set(start - timedelta(days=10))  # due end of 26 Nov: today
    today = await new_request(client, await make_subject(app, "+821091110012"), "deletion")
    clock.set(start - timedelta(days=8))  # due end of 28 Nov: within 2 days
    soon = await new_request(client, await make_subject(app, "+821091110013"), "deletion")
    clock.set(start - timedelta(days=2))
    postponed = await new_request(client, await make_subject(app, "+821091110014"), "access")
    clock.set(start)
    await drive(app, postponed, "in_review")
    extended = await client.post(
        f"/v1/staff/requests/{postponed}/extend",
        json={"reason": "자료 수집 중", "new_due_at": "2026-12-20"},
        headers=staff(app, *OFFICER, sub="park"),
    )
    assert extended.status_code == 200, extended.text
    await sign_in(browser_like, "support_agent", "kim")

    async def view(name: str) -> set[str]:
        page = await browser_like.get(f"/console/?view={name}")
        assert page.status_code == 200
        assert f'href="/console/?view={name}" aria-current="page"' in page.text
        return references(page.text)

    assert await view("overdue") == {late}
    assert await view("today") == {today}
    assert await view("soon") == {today, soon}
    assert await view("postponed") == {postponed}
    assert await view("awaiting") == set()
    everything = await browser_like.get("/console/")
    assert references(everything.text) == {late, today, soon, postponed}
    assert "역할: 상담원" in everything.text  # the role's name, not its code


async def test_the_statistics_page_offers_this_month_and_last_month(
    app: FastAPI, browser_like: httpx.AsyncClient
) -> None:
    await sign_in(browser_like, "privacy_officer", "park")
    page = await browser_like.get("/console/statistics")  # the clock: 26 Nov 2026
    assert page.status_code == 200
    assert 'href="/console/statistics?from=2026-10-01&amp;to=2026-10-31"' in page.text
    assert (
        'href="/console/statistics?from=2026-11-01&amp;to=2026-11-26" aria-current="page"'
        in page.text
    )
    last = await browser_like.get("/console/statistics?from=2026-10-01&to=2026-10-31")
    assert 'href="/console/export.csv?from=2026-10-01&amp;to=2026-10-31"' in last.text


async def test_intake_errors_name_the_fields_to_fix(browser_like: httpx.AsyncClient) -> None:
    token = await sign_in(browser_like, "support_agent", "kim")
    bad = await browser_like.post(
        "/console/intake",
        data={
            "csrf_token": token,
            "type": "suspension",
            "purposes": ["marketing"],
            "phone": "010-12",
            "channel": "phone",
            "method": "agent",
            "check": "callback_to_number_on_record",
        },
    )
    assert bad.status_code == 422
    assert 'href="#phone"' in bad.text and "010-1234-5678처럼" in bad.text
    assert re.search(r'id="purpose-marketing" name="purposes" value="marketing" checked', bad.text)
    none = await browser_like.post(
        "/console/intake",
        data={"csrf_token": token, "type": "suspension", "channel": "phone", "method": "agent"},
    )
    assert none.status_code == 422
    for field in ("#phone", "#check", "#purposes"):
        assert f'href="{field}"' in none.text, field


async def test_an_agent_withdraws_a_request_the_caller_no_longer_wants(
    app: FastAPI, browser_like: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app, "+821091110007")
    request_id = await new_request(client, subject, "deletion")
    token = await sign_in(browser_like, "support_agent", "kim")
    page = await browser_like.get(f"/console/requests/{request_id}")
    assert f'action="/console/requests/{request_id}/withdraw"' in page.text
    done = await browser_like.post(
        f"/console/requests/{request_id}/withdraw", data={"csrf_token": token}
    )
    assert done.status_code == 303, done.text
    mine = await client.get(f"/v1/requests/{request_id}", headers=subject.headers)
    assert mine.json()["status"] == "withdrawn"
