"""A COMMIT that fails answers 503 with Retry-After and leaves nothing stored, on every endpoint
that writes: each family of the API and each page area's forms (/privacy/, /console/,
/partner/).

The commit is made to fail by a deferred constraint trigger on every table of the app (standing in
for a deadlock, a failover or a dropped connection): the handler runs to its end, then COMMIT
raises. Nothing the handler wrote may survive (every table's rows compared before and after), the
answer must say so (503 ``commit-failed``, ``Retry-After``; a page of its area for a form), and it
must hand out nothing that only a stored change would make good: no session cookie, no token.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from standardwebhooks import Webhook

from app.db import Database
from app.models import metadata
from app.outbox.worker import Worker
from app.webhooks.signing import webhook_id
from tests.support.lifecycle import (
    AGENT,
    CORRECTION,
    OFFICER,
    Subject,
    drive,
    make_subject,
    new_request,
    staff,
)
from tests.support.servers import RecordingServer
from tests.support.webhooks import notify, register

OFFICER_EMAIL = "privacy@qxpress.example"


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "allow_private_webhooks": True,
        "webhook_processor_cache_seconds": 0,
        "auto_approve_access": False,
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "gateway_token": "gw-secret",
        "privacy_officer_email": OFFICER_EMAIL,
        "public_base_url": "https://testserver",
    }


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser: https (page cookies are Secure), keeps cookies."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    browser: httpx.AsyncClient
    db: Database
    worker: Worker
    gateway: RecordingServer
    receiver: RecordingServer


Call = Callable[[], Awaitable[httpx.Response]]
Setup = Callable[[World], Awaitable[Call]]


# -- helpers ---------------------------------------------------------------------------------


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token on the page"
    return found.group(1)


async def form_post(w: World, form_page: str, path: str, data: dict[str, Any]) -> Call:
    """Read the form's page (its CSRF token) now; post the form when called."""
    page = await w.browser.get(form_page)
    assert page.status_code == 200, (form_page, page.status_code)
    token = csrf_in(page.text)
    return lambda: w.browser.post(path, data={**data, "csrf_token": token})


def privacy_sign_in(w: World, subject: Subject) -> None:
    token = subject.headers["Authorization"].removeprefix("Bearer ")
    w.browser.cookies.set("dsr_privacy", token, domain="testserver.local", path="/privacy")


async def console_sign_in(w: World, role: str, user: str) -> None:
    page = await w.browser.get("/console/sign-in")
    signed = await w.browser.post(
        "/console/dev-sign-in", data={"csrf_token": csrf_in(page.text), "role": role, "user": user}
    )
    assert signed.status_code == 303, signed.text


async def started_verification(w: World, destination: str) -> tuple[str, str]:
    """A verification whose code went out: (its id, the code)."""
    started = await w.client.post(
        "/v1/verifications", json={"channel": "sms", "destination": destination}
    )
    assert started.status_code == 202, started.text
    await w.worker.drain()
    code = w.gateway.requests("/sms")[-1].json()["variables"]["code"]
    return str(started.json()["verification_id"]), str(code)


async def refused(w: World) -> tuple[Subject, str]:
    subject = await make_subject(w.app, "+821055550002")
    request_id = await new_request(w.client, subject, "correction")
    await drive(w.app, request_id, "refused")
    return subject, request_id


async def delivered_notice(w: World) -> tuple[str, uuid.UUID]:
    """A processor told of a correction by webhook: (its secret, the delivered message)."""
    headers = lambda *roles: staff(w.app, *roles)  # noqa: E731
    secret = (await register(w.client, headers, code="hct", url=w.receiver.url))["secret"]
    message_id = await notify(w.db, w.worker, code="hct")
    assert message_id is not None
    await w.worker.drain()
    return str(secret), message_id


# -- the API ---------------------------------------------------------------------------------

OFFICER_H = ("privacy_officer",)


async def api_start_verification(w: World) -> Call:
    body = {"channel": "sms", "destination": "010-5555-0101"}
    return lambda: w.client.post("/v1/verifications", json=body)


async def api_confirm_verification(w: World) -> Call:
    verification_id, code = await started_verification(w, "010-5555-0102")
    return lambda: w.client.post(
        f"/v1/verifications/{verification_id}/confirm", json={"code": code}
    )


async def api_confirm_with_a_wrong_code(w: World) -> Call:
    # A wrong code is a try that must be counted: it cannot be answered "wrong" unstored.
    verification_id, code = await started_verification(w, "010-5555-0103")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    return lambda: w.client.post(
        f"/v1/verifications/{verification_id}/confirm", json={"code": wrong}
    )


async def api_submit_request(w: World) -> Call:
    subject = await make_subject(w.app)
    return lambda: w.client.post("/v1/requests", json=CORRECTION, headers=subject.headers)


async def api_withdraw_request(w: World) -> Call:
    subject = await make_subject(w.app)
    request_id = await new_request(w.client, subject, "deletion")
    return lambda: w.client.post(
        f"/v1/requests/{request_id}/withdraw", json={}, headers=subject.headers
    )


async def api_object(w: World) -> Call:
    subject, request_id = await refused(w)
    return lambda: w.client.post(
        f"/v1/requests/{request_id}/objection",
        json={"reason": "거절 사유에 동의하지 않습니다."},
        headers=subject.headers,
    )


async def api_staff_intake(w: World) -> Call:
    body = {
        "request": {"type": "deletion", "categories": ["identity"]},
        "identifiers": {"phone": "010-5555-0104"},
        "intake_channel": "phone",
        "verification": {"method": "agent", "check": "callback_to_number_on_record"},
    }
    return lambda: w.client.post(
        "/v1/staff/requests", json=body, headers=staff(w.app, *AGENT, sub="agent-2")
    )


async def api_staff_review(w: World) -> Call:
    request_id = await new_request(w.client, await make_subject(w.app), "access")
    return lambda: w.client.post(
        f"/v1/staff/requests/{request_id}/review", headers=staff(w.app, *AGENT)
    )


async def api_staff_approve(w: World) -> Call:
    request_id = await new_request(w.client, await make_subject(w.app), "deletion")
    await drive(w.app, request_id, "in_review")
    return lambda: w.client.post(
        f"/v1/staff/requests/{request_id}/approve", json={}, headers=staff(w.app, *AGENT)
    )


async def api_staff_view(w: World) -> Call:
    # A staff read is an access record: shown only once that record is stored.
    request_id = await new_request(w.client, await make_subject(w.app), "access")
    return lambda: w.client.get(f"/v1/staff/requests/{request_id}", headers=staff(w.app, *AGENT))


async def api_staff_note(w: World) -> Call:
    request_id = await new_request(w.client, await make_subject(w.app), "access")
    return lambda: w.client.post(
        f"/v1/staff/requests/{request_id}/notes",
        json={"text": "고객이 다시 전화하기로 함"},
        headers=staff(w.app, *AGENT),
    )


async def api_staff_bulk(w: World) -> Call:
    request_id = await new_request(w.client, await make_subject(w.app), "access")
    return lambda: w.client.post(
        "/v1/staff/requests/bulk",
        json={"action": "take", "ids": [request_id]},
        headers=staff(w.app, *AGENT),
    )


async def api_decide_objection(w: World) -> Call:
    subject, request_id = await refused(w)
    objection = await w.client.post(
        f"/v1/requests/{request_id}/objection",
        json={"reason": "거절 사유에 동의하지 않습니다."},
        headers=subject.headers,
    )
    assert objection.status_code == 201, objection.text
    objection_id = objection.json()["id"]
    return lambda: w.client.post(
        f"/v1/staff/objections/{objection_id}/decide",
        json={"outcome": "dismissed", "explanation": "법령에 따른 거절이 맞습니다."},
        headers=staff(w.app, *OFFICER, sub="officer-2"),
    )


async def api_register_processor(w: World) -> Call:
    body = {"code": "hct", "name": "HCT", "nation": "TW", "webhook_url": w.receiver.url}
    return lambda: w.client.post("/v1/processors", json=body, headers=staff(w.app, *OFFICER_H))


async def api_rotate_secret(w: World) -> Call:
    await delivered_notice(w)
    return lambda: w.client.post(
        "/v1/processors/hct/rotate-secret", headers=staff(w.app, *OFFICER_H)
    )


async def api_update_processor(w: World) -> Call:
    await delivered_notice(w)
    return lambda: w.client.patch(
        "/v1/processors/hct", json={"name": "HCT Taiwan"}, headers=staff(w.app, *OFFICER_H)
    )


async def api_replay_delivery(w: World) -> Call:
    _, message_id = await delivered_notice(w)
    return lambda: w.client.post(
        f"/v1/deliveries/{message_id}/replay", headers=staff(w.app, *OFFICER_H)
    )


async def api_acknowledge(w: World) -> Call:
    secret, message_id = await delivered_notice(w)
    raw = json.dumps({"webhook_id": webhook_id(message_id), "status": "applied"}).encode()
    at = w.app.state.clock.now()
    msg_id = f"ack_{uuid.uuid4().hex}"
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, raw.decode()),
    }
    return lambda: w.client.post("/v1/partner/acknowledgements", content=raw, headers=headers)


# -- the privacy center (/privacy/) ----------------------------------------------------------


async def privacy_send_code(w: World) -> Call:
    return await form_post(
        w, "/privacy/verify", "/privacy/verify", {"channel": "sms", "destination": "010-5555-0105"}
    )


async def privacy_confirm_code(w: World) -> Call:
    page = await w.browser.get("/privacy/verify")
    sent = await w.browser.post(
        "/privacy/verify",
        data={
            "channel": "sms",
            "destination": "010-5555-0106",
            "csrf_token": csrf_in(page.text),
        },
    )
    if sent.is_redirect:  # the code page is its own address
        sent = await w.browser.get(sent.headers["location"])
    action = re.search(r'action="(/privacy/verify/[0-9a-f-]+)"', sent.text)
    assert action, sent.text
    await w.worker.drain()
    code = w.gateway.requests("/sms")[-1].json()["variables"]["code"]
    token = csrf_in(sent.text)
    return lambda: w.browser.post(action.group(1), data={"code": code, "csrf_token": token})


async def privacy_submit_request(w: World) -> Call:
    privacy_sign_in(w, await make_subject(w.app, "+821055550003"))
    return await form_post(
        w,
        "/privacy/requests/new/suspension",
        "/privacy/requests/new/suspension",
        {"purposes": ["marketing"], "step": "submit"},
    )


async def privacy_withdraw(w: World) -> Call:
    subject = await make_subject(w.app, "+821055550004")
    request_id = await new_request(w.client, subject, "deletion")
    privacy_sign_in(w, subject)
    return await form_post(
        w,
        f"/privacy/requests/{request_id}/withdraw",
        f"/privacy/requests/{request_id}/withdraw",
        {},
    )


async def privacy_object(w: World) -> Call:
    subject, request_id = await refused(w)
    privacy_sign_in(w, subject)
    return await form_post(
        w,
        f"/privacy/requests/{request_id}/objection",
        f"/privacy/requests/{request_id}/objection",
        {"reason": "거절 사유에 동의하지 않습니다."},
    )


# -- the support console (/console/) ---------------------------------------------------------


async def console_dev_sign_in(w: World) -> Call:
    return await form_post(
        w, "/console/sign-in", "/console/dev-sign-in", {"role": "support_agent", "user": "kim"}
    )


async def console_intake(w: World) -> Call:
    await console_sign_in(w, "support_agent", "kim")
    return await form_post(
        w,
        "/console/intake",
        "/console/intake",
        {
            "type": "suspension",
            "purposes": ["marketing"],
            "phone": "010-5555-0107",
            "channel": "phone",
            "method": "agent",
            "check": "callback_to_number_on_record",
        },
    )


async def console_review(w: World) -> Call:
    request_id = await new_request(w.client, await make_subject(w.app), "access")
    await console_sign_in(w, "support_agent", "kim")
    return await form_post(
        w,
        f"/console/requests/{request_id}",
        f"/console/requests/{request_id}/review",
        {},
    )


async def console_note(w: World) -> Call:
    request_id = await new_request(w.client, await make_subject(w.app), "access")
    await console_sign_in(w, "support_agent", "kim")
    return await form_post(
        w,
        f"/console/requests/{request_id}",
        f"/console/requests/{request_id}/note",
        {"text": "고객이 다시 전화하기로 함"},
    )


async def console_replay(w: World) -> Call:
    _, message_id = await delivered_notice(w)
    await console_sign_in(w, "privacy_officer", "lee")
    return await form_post(w, "/console/processors", f"/console/deliveries/{message_id}/replay", {})


# -- partners without a webhook (/partner/) --------------------------------------------------


async def partner_confirm(w: World) -> Call:
    body = {
        "code": "kuroneko-mail",
        "name": "Kuroneko",
        "nation": "JP",
        "channel": "email",
        "email": "dsr@kuroneko.example",
    }
    registered = await w.client.post("/v1/processors", json=body, headers=staff(w.app, *OFFICER_H))
    assert registered.status_code == 201, registered.text
    message_id = await notify(w.db, w.worker, code="kuroneko-mail")
    assert message_id is not None
    await w.worker.drain()
    mail = next(
        item.json()
        for item in w.gateway.requests("/email")
        if item.json()["to"] == "dsr@kuroneko.example"
    )
    link = re.search(r"https://testserver(/partner/confirm/[0-9a-f.]+)", mail["body"])
    assert link, mail["body"]
    return await form_post(
        w,
        link.group(1),
        link.group(1),
        {"notice": webhook_id(message_id), "status": "applied", "reason": ""},
    )


CASES: dict[str, Setup] = {
    "POST /v1/verifications": api_start_verification,
    "POST /v1/verifications/{id}/confirm": api_confirm_verification,
    "POST /v1/verifications/{id}/confirm (wrong code)": api_confirm_with_a_wrong_code,
    "POST /v1/requests": api_submit_request,
    "POST /v1/requests/{id}/withdraw": api_withdraw_request,
    "POST /v1/requests/{id}/objection": api_object,
    "POST /v1/staff/requests": api_staff_intake,
    "POST /v1/staff/requests/{id}/review": api_staff_review,
    "POST /v1/staff/requests/{id}/approve": api_staff_approve,
    "GET /v1/staff/requests/{id} (an access record)": api_staff_view,
    "POST /v1/staff/requests/{id}/notes": api_staff_note,
    "POST /v1/staff/requests/bulk": api_staff_bulk,
    "POST /v1/staff/objections/{id}/decide": api_decide_objection,
    "POST /v1/processors": api_register_processor,
    "PATCH /v1/processors/{code}": api_update_processor,
    "POST /v1/processors/{code}/rotate-secret": api_rotate_secret,
    "POST /v1/deliveries/{id}/replay": api_replay_delivery,
    "POST /v1/partner/acknowledgements": api_acknowledge,
    "POST /privacy/verify": privacy_send_code,
    "POST /privacy/verify/{id}": privacy_confirm_code,
    "POST /privacy/requests/new/{kind}": privacy_submit_request,
    "POST /privacy/requests/{id}/withdraw": privacy_withdraw,
    "POST /privacy/requests/{id}/objection": privacy_object,
    "POST /console/dev-sign-in": console_dev_sign_in,
    "POST /console/intake": console_intake,
    "POST /console/requests/{id}/review": console_review,
    "POST /console/requests/{id}/note": console_note,
    "POST /console/deliveries/{id}/replay": console_replay,
    "POST /partner/confirm/{token}": partner_confirm,
}


# -- the failing commit ----------------------------------------------------------------------


def _tables() -> list[str]:
    return [table.name for table in metadata.sorted_tables]


async def refuse_commits(db: Database) -> None:
    """From now on, any transaction that wrote a row fails at COMMIT (as a deadlock found then;
    on the intake's autocommit connection, as its one statement ends)."""
    async with db.transaction() as session:
        await session.execute(
            sa.text(
                "CREATE FUNCTION test_refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'commit refused by the test'"
                " USING ERRCODE = 'deadlock_detected'; END $$"
            )
        )
        for name in _tables():
            await session.execute(
                sa.text(
                    f"CREATE CONSTRAINT TRIGGER test_refuse_commit AFTER INSERT OR UPDATE OR "
                    f'DELETE ON "{name}" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                    "EXECUTE FUNCTION test_refuse_commit()"
                )
            )


async def allow_commits(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(sa.text("DROP FUNCTION IF EXISTS test_refuse_commit() CASCADE"))


async def snapshot(db: Database) -> dict[str, tuple[int, str]]:
    """Every table's row count and a digest of its rows."""
    selects = " UNION ALL ".join(
        f"SELECT '{name}', count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
        f'FROM "{name}" t'
        for name in _tables()
    )
    async with db.sessionmaker() as session:
        rows = (await session.execute(sa.text(selects))).all()
    return {str(name): (int(count), str(digest)) for name, count, digest in rows}


def changed(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    return sorted(name for name in before if before[name] != after[name])


@pytest.mark.parametrize("case", list(CASES))
async def test_a_failing_commit_answers_503_and_stores_nothing(
    case: str,
    app: FastAPI,
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    db: Database,
    worker: Worker,
    gateway: RecordingServer,
) -> None:
    with RecordingServer() as receiver:
        world = World(app, client, browser, db, worker, gateway, receiver)
        call = await CASES[case](world)
        before = await snapshot(db)
        await refuse_commits(db)
        try:
            response = await call()
        finally:
            await allow_commits(db)
        after = await snapshot(db)

    assert response.status_code == 503, (response.status_code, response.text[:2000])
    assert response.headers["retry-after"] == "1"
    assert changed(before, after) == []
    assert "commit refused" not in response.text  # the database's message stays inside
    if case.split()[1].startswith("/v1/"):
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "commit-failed"
        assert "token" not in response.json()
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert 'lang="ko"' in response.text  # a page of its area, in the user's language
        assert "location" not in response.headers  # no redirect to what was not stored
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    assert not any(c.startswith(("dsr_privacy=", "dsr_console=")) for c in cookies), cookies


def _routes(app: FastAPI) -> list[Any]:
    """Every route of the app (the included routers' own, with their prefixes)."""
    found: list[Any] = []
    for route in app.router.routes:
        inner = getattr(route, "original_router", None)
        found.extend(inner.routes if inner is not None else [route])
    return found


def test_every_writing_page_route_and_api_family_has_a_case(app: FastAPI) -> None:
    """A new form or a new API family gets its case here."""
    covered = [re.sub(r"\{[^}]+\}", "x", case.split()[1]) for case in CASES]
    families = {"/v1/" + path.split("/")[2] for path in covered if path.startswith("/v1/")}
    api_families = {
        "/v1/" + path.split("/")[2]
        for path, operations in app.openapi()["paths"].items()
        if set(operations) & {"post", "patch", "put", "delete"}
    }
    assert api_families - {"/v1/usage-checks"} == families  # the usage check writes nothing
    forms = {
        route.path
        for route in _routes(app)
        if "POST" in (getattr(route, "methods", None) or ())
        and route.path.startswith(("/privacy", "/console", "/partner"))
    }
    assert len(forms) >= 12
    missing = {
        path
        for path in forms - NOTHING_TO_STORE
        if not any(re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", path), case) for case in covered)
    }
    assert missing == set()


# Page forms that write nothing: signing out clears a cookie, a search only reads.
NOTHING_TO_STORE = {"/privacy/sign-out", "/console/sign-out", "/console/search"}
