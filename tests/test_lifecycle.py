"""Every transition, legal and illegal; four-eyes; authorization of every staff endpoint."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.db import Database
from app.errors import IllegalTransition
from app.outbox.worker import Worker
from app.requests import completion
from tests.support.lifecycle import AGENT, OFFICER, drive, make_subject, new_request, staff

STATUSES = [
    "received",
    "in_review",
    "in_progress",
    "completed",
    "partially_completed",
    "refused",
    "withdrawn",
]
REFUSE = {"ground": "identity_not_verified", "explanation": "본인 확인이 되지 않았습니다."}
EXTEND = {"reason": "자료 확인에 시간이 필요합니다.", "new_due_at": "2026-12-20T00:00:00+09:00"}

# action -> (how to call it, statuses it is legal from, status it leads to)
ACTIONS: dict[str, tuple[str, set[str], str | None]] = {
    "review": ("staff", {"received"}, "in_review"),
    "approve": ("staff", {"in_review"}, "in_progress"),
    "refuse": ("officer", {"in_review"}, "refused"),
    "propose-refusal": ("staff", {"in_review"}, "in_review"),
    "withdraw": ("subject", {"received", "in_review"}, "withdrawn"),
}
BODIES: dict[str, Any] = {
    "review": None,
    "approve": {},
    "refuse": REFUSE,
    "propose-refusal": REFUSE,
    "withdraw": None,
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The state machine is tested here; the two-person rule for refusals has its own tests
    # (tests/test_decision_rules.py), so one officer may refuse in this module.
    return {"auto_approve_access": False, "single_officer_refusals": True}


async def call(
    app: FastAPI, client: httpx.AsyncClient, subject: Any, action: str, request_id: str
) -> httpx.Response:
    how = ACTIONS[action][0]
    if how == "subject":
        return await client.post(f"/v1/requests/{request_id}/{action}", headers=subject.headers)
    roles = OFFICER if how == "officer" else AGENT
    return await client.post(
        f"/v1/staff/requests/{request_id}/{action}",
        json=BODIES[action],
        headers=staff(app, *roles, sub="officer-9" if how == "officer" else "agent-9"),
    )


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", sorted(ACTIONS))
async def test_every_action_from_every_state(
    app: FastAPI, client: httpx.AsyncClient, action: str, status: str
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, status)
    response = await call(app, client, subject, action, request_id)
    _how, legal_from, target = ACTIONS[action]
    if status in legal_from:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == (target or status)
    else:
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["code"] == "illegal-transition"
        assert body["current_status"] == status
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("status", STATUSES)
async def test_completion_only_from_in_progress(
    app: FastAPI, client: httpx.AsyncClient, status: str
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, status)

    async def complete() -> str:
        async with app.state.db.transaction() as session:
            request = await completion.complete_request(
                session,
                crypto=app.state.crypto,
                settings=app.state.settings,
                now=app.state.clock.now(),
                request_id=uuid.UUID(request_id),
                outcome="completed",
                result={"corrected": 1},
            )
            return request.status

    if status == "in_progress":
        assert await complete() == "completed"
        assert await complete() == "completed"  # idempotent: a job that runs twice is harmless
    elif status in ("completed", "partially_completed"):
        assert await complete() == status
    else:
        with pytest.raises(IllegalTransition):
            await complete()


async def test_a_support_agent_cannot_refuse_only_propose(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject)
    await drive(app, request_id, "in_review")
    base = f"/v1/staff/requests/{request_id}"
    for roles in (AGENT, ("admin",)):
        refused = await client.post(f"{base}/refuse", json=REFUSE, headers=staff(app, *roles))
        assert refused.status_code == 403
    proposed = await client.post(f"{base}/propose-refusal", json=REFUSE, headers=staff(app, *AGENT))
    assert proposed.status_code == 200 and proposed.json()["proposal_pending"] is True
    again = await client.post(
        f"{base}/propose-refusal", json=REFUSE, headers=staff(app, *AGENT, sub="agent-2")
    )
    assert again.status_code == 409
    # With a proposal pending, agents cannot approve around it either, the proposer least of all.
    for sub in ("agent-1", "agent-2"):
        approved = await client.post(
            f"{base}/approve", json={}, headers=staff(app, *AGENT, sub=sub)
        )
        assert approved.status_code == 403 and approved.json()["code"] == "four-eyes"
    decided = await client.post(
        f"{base}/refuse", json=REFUSE, headers=staff(app, *OFFICER, sub="officer-1")
    )
    assert decided.status_code == 200 and decided.json()["status"] == "refused"
    detail = await client.get(base, headers=staff(app, *OFFICER))
    [refused_event] = [e for e in detail.json()["history"] if e["action"] == "refuse"]
    assert refused_event["details"]["proposed_by"] == "staff:agent-1"
    assert (
        refused_event["actor"] == "staff:officer-1" and refused_event["role"] == "privacy_officer"
    )


async def test_an_officer_cannot_decide_their_own_proposal(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject)
    await drive(app, request_id, "in_review")
    base = f"/v1/staff/requests/{request_id}"
    me = staff(app, *OFFICER, sub="officer-1")
    assert (
        await client.post(f"{base}/propose-refusal", json=REFUSE, headers=me)
    ).status_code == 200
    for action, body in (("refuse", REFUSE), ("approve", {})):
        own = await client.post(f"{base}/{action}", json=body, headers=me)
        assert own.status_code == 403 and own.json()["code"] == "four-eyes"
    other = staff(app, *OFFICER, sub="officer-2")
    approved = await client.post(f"{base}/approve", json={}, headers=other)
    assert approved.status_code == 200 and approved.json()["status"] == "in_progress"


async def test_partial_grants_are_per_item_and_an_officers_decision(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app)
    created = await client.post(
        "/v1/requests",
        json={
            "type": "correction",
            "corrections": [
                {"item": "address", "new_value": "서울특별시 강서구 공항대로 247"},
                {"item": "name", "new_value": "김민수"},
            ],
        },
        headers=subject.headers,
    )
    request_id = created.json()["id"]
    await drive(app, request_id, "in_review")
    base = f"/v1/staff/requests/{request_id}"
    partial = {
        "refused_items": [{"item": "name", "ground": "policy_6_3"}],
        "explanation": "이름 변경은 법원 결정문이 필요합니다.",
    }
    agent = await client.post(f"{base}/approve", json=partial, headers=staff(app, *AGENT))
    assert agent.status_code == 403
    officer = staff(app, *OFFICER, sub="officer-1")
    for bad in (
        {"refused_items": [{"item": "email", "ground": "policy_6_3"}], "explanation": "x"},
        {"refused_items": [{"item": "name", "ground": "pipa_36_1_proviso"}], "explanation": "x"},
        {"refused_items": [{"item": "name", "ground": "policy_6_3"}]},
    ):
        response = await client.post(f"{base}/approve", json=bad, headers=officer)
        assert response.status_code == 422, bad
    granted = await client.post(f"{base}/approve", json=partial, headers=officer)
    assert granted.status_code == 200
    assert granted.json()["decision_result"] == "partially_approved"
    mine = await client.get(f"/v1/requests/{request_id}", headers=subject.headers)
    decision = mine.json()["decision"]
    assert decision["result"] == "partially_approved"
    assert decision["refusals"] == [
        {
            "item": "name",
            "item_label": "이름",
            "ground": "policy_6_3",
            "ground_label": "법령 등에 위반되는 경우",
            "legal_source": "개인정보 처리방침 제6조 ③ (개인정보 보호법 제35조제4항제1호 참조)",
            "stage": "decision",
        }
    ]
    assert decision["explanation"] == "이름 변경은 법원 결정문이 필요합니다."


async def test_a_ground_must_apply_to_the_type(app: FastAPI, client: httpx.AsyncClient) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "correction")
    await drive(app, request_id, "in_review")
    response = await client.post(
        f"/v1/staff/requests/{request_id}/refuse",
        json={"ground": "pipa_37_2_4", "explanation": "x"},
        headers=staff(app, *OFFICER),
    )
    assert response.status_code == 422
    unknown = await client.post(
        f"/v1/staff/requests/{request_id}/refuse",
        json={"ground": "because", "explanation": "x"},
        headers=staff(app, *OFFICER),
    )
    assert unknown.status_code == 422


async def test_approval_queues_the_fulfilment_job_in_the_same_transaction(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "deletion")
    await drive(app, request_id, "in_progress")
    async with db.sessionmaker() as session:
        rows = (
            await session.execute(
                sa.text("SELECT kind, topic, request_ref FROM outbox_message WHERE kind = 'job'")
            )
        ).all()
    assert [(kind, topic, str(ref)) for kind, topic, ref in rows] == [
        ("job", "fulfil.deletion", request_id)
    ]


async def test_otp_access_requests_are_approved_automatically_when_configured(
    app: FastAPI, client: httpx.AsyncClient, db: Database, worker: Worker
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"auto_approve_access": True})
    worker.ctx.settings = app.state.settings
    subject = await make_subject(app)
    response = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    # Intake only queues the approval; the worker's job (one claim: it alone is due) approves.
    assert response.status_code == 201 and response.json()["status"] == "received"
    assert await worker.run_once(kinds=["job"]) == 1
    mine = await client.get(f"/v1/requests/{response.json()['id']}", headers=subject.headers)
    assert mine.json()["status"] == "in_progress"
    detail = await client.get(
        f"/v1/staff/requests/{response.json()['id']}", headers=staff(app, *OFFICER)
    )
    actions = [(e["action"], e["actor"]) for e in detail.json()["history"]]
    assert ("approve", "system") in actions and ("fulfilment_queued", "system") in actions
    # Agent intake of an access request still waits for a person.
    intake = await client.post(
        "/v1/staff/requests",
        json={
            "request": {"type": "access"},
            "identifiers": {"phone": "010-5555-1234"},
            "intake_channel": "phone",
            "verification": {"method": "agent", "check": "callback_to_number_on_record"},
        },
        headers=staff(app, *AGENT),
    )
    assert intake.status_code == 201 and intake.json()["status"] == "received"


STAFF_CALLS: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/v1/staff/requests", None, {"support_agent", "privacy_officer", "admin"}),
    ("GET", "/v1/staff/requests/{id}", None, {"support_agent", "privacy_officer", "admin"}),
    ("POST", "/v1/staff/requests/{id}/review", None, {"support_agent", "privacy_officer", "admin"}),
    (
        "POST",
        "/v1/staff/requests/{id}/propose-refusal",
        REFUSE,
        {"support_agent", "privacy_officer", "admin"},
    ),
    ("POST", "/v1/staff/requests/{id}/approve", {}, {"support_agent", "privacy_officer", "admin"}),
    ("POST", "/v1/staff/requests/{id}/refuse", REFUSE, {"privacy_officer"}),
    ("POST", "/v1/staff/requests/{id}/extend", EXTEND, {"privacy_officer"}),
    ("POST", "/v1/staff/requests/{id}/resume", {}, {"privacy_officer"}),
    (
        "POST",
        "/v1/staff/requests/{id}/withdraw",
        None,
        {"support_agent", "privacy_officer", "admin"},
    ),
    ("POST", "/v1/staff/requests/{id}/retry-fulfilment", None, {"privacy_officer", "admin"}),
    ("GET", "/v1/staff/objections", None, {"support_agent", "privacy_officer", "admin"}),
    (
        "POST",
        "/v1/staff/objections/{id}/decide",
        {"outcome": "dismissed", "explanation": "x"},
        {"privacy_officer"},
    ),
    ("GET", "/v1/audit", None, {"privacy_officer", "admin"}),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), STAFF_CALLS)
async def test_staff_endpoints_authorize_each_role(
    app: FastAPI,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any,
    allowed: set[str],
) -> None:
    subject = await make_subject(app)
    url = path.format(id=uuid.uuid4())
    assert (await client.request(method, url, json=body)).status_code == 401
    bad = await client.request(method, url, json=body, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    subject_call = await client.request(method, url, json=body, headers=subject.headers)
    assert subject_call.status_code == 403
    for role in ("support_agent", "privacy_officer", "admin", "service"):
        response = await client.request(method, url, json=body, headers=staff(app, role))
        if role in allowed:
            # Past authorization: an unknown id is 404; listings answer 200.
            assert response.status_code in (200, 404), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
