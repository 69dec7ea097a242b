"""Decisions at the law's edges: postponement (access only), whole refusals, four eyes.

PIPA Art. 35(3) and Decree Art. 42(2): access may be postponed with a reason notified within
the 10 days, and given without delay once the reason ends. Decree Arts. 43(3), 44(2):
correction, deletion and suspension are answered within 10 days, with no postponement.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.clock import FrozenClock
from app.outbox.worker import Worker
from app.vocabulary import CATEGORIES, ITEMS
from tests.support.lifecycle import (
    AGENT,
    BODIES,
    OFFICER,
    make_subject,
    new_request,
    propose_refusal,
    staff,
    submit,
)
from tests.support.servers import RecordingServer

PHONE = "+821012345678"
POSTPONE = {"reason": "자료를 모으는 중입니다.", "new_due_at": "2026-12-18T10:00:00+09:00"}


@pytest.fixture
def settings_overrides(gateway: RecordingServer, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The gateway and reviewed access; a test adds settings by indirect parametrisation."""
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "auto_approve_access": False,
        **getattr(request, "param", {}),
    }


def templates(gateway: RecordingServer) -> Counter[str]:
    return Counter(received.json()["template"] for received in gateway.requests("/sms"))


async def in_review(app: FastAPI, client: httpx.AsyncClient, request_type: str) -> str:
    subject = await make_subject(app, PHONE)
    request_id = await new_request(client, subject, request_type)
    review = await client.post(
        f"/v1/staff/requests/{request_id}/review", headers=staff(app, *AGENT)
    )
    assert review.status_code == 200, review.text
    return request_id


async def detail(app: FastAPI, client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    response = await client.get(
        f"/v1/staff/requests/{request_id}", headers=staff(app, *OFFICER, sub="reader")
    )
    assert response.status_code == 200
    return dict(response.json())


@pytest.mark.parametrize(
    "request_type", ["correction", "deletion", "suspension", "consent_withdrawal"]
)
async def test_only_access_can_be_postponed(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    request_type: str,
) -> None:
    request_id = await in_review(app, client, request_type)
    before = await detail(app, client, request_id)
    response = await client.post(
        f"/v1/staff/requests/{request_id}/extend",
        json=POSTPONE,
        headers=staff(app, *OFFICER, sub="officer-1"),
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "postponement-not-allowed"
    assert "35(3)" in response.json()["detail"] and "43(3), 44(2)" in response.json()["detail"]
    after = await detail(app, client, request_id)
    assert after["due_at"] == before["due_at"] and after["extensions"] == 0
    await worker.drain()
    assert templates(gateway)["request_postponed"] == 0


async def test_no_postponement_after_the_due_date(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    clock: FrozenClock,
) -> None:
    request_id = await in_review(app, client, "access")
    before = await detail(app, client, request_id)
    clock.advance(timedelta(days=11))  # 7 Dec: the due date (6 Dec) has passed
    late = await client.post(
        f"/v1/staff/requests/{request_id}/extend",
        json={**POSTPONE, "new_due_at": "2026-12-20T10:00:00+09:00"},
        headers=staff(app, *OFFICER, sub="officer-1"),
    )
    assert late.status_code == 409
    assert late.headers["content-type"] == "application/problem+json"
    assert late.json()["code"] == "postponement-not-allowed"
    assert "42(2)" in late.json()["detail"]
    after = await detail(app, client, request_id)
    assert after["extensions"] == 0 and after["due_at"] == before["due_at"]
    assert after["overdue"] is True
    await worker.drain()
    assert templates(gateway)["request_postponed"] == 0


async def test_postponed_access_is_resumed_at_once_when_the_reason_ends(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    clock: FrozenClock,
) -> None:
    request_id = await in_review(app, client, "access")
    officer = staff(app, *OFFICER, sub="officer-1")
    base = f"/v1/staff/requests/{request_id}"
    not_postponed = await client.post(f"{base}/resume", json={}, headers=officer)
    assert not_postponed.status_code == 409
    extended = await client.post(f"{base}/extend", json=POSTPONE, headers=officer)
    assert extended.status_code == 200
    assert extended.json()["due_at_local"] == "2026-12-18T23:59:59+09:00"
    clock.advance(timedelta(days=2))  # 28 Nov: the records arrived
    agent = await client.post(f"{base}/resume", json={}, headers=staff(app, *AGENT))
    assert agent.status_code == 403
    resumed = await client.post(
        f"{base}/resume", json={"note": "자료가 도착했습니다."}, headers=officer
    )
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "in_progress"
    assert resumed.json()["due_at_local"] == "2026-11-28T23:59:59+09:00"
    history = [event["action"] for event in (await detail(app, client, request_id))["history"]]
    assert history[-3:] == ["postponement_ended", "approve", "fulfilment_queued"]
    again = await client.post(f"{base}/resume", json={}, headers=officer)
    assert again.status_code == 409
    await worker.drain()
    assert templates(gateway)["request_postponed"] == 1
    # Access is given without delay: the worker made the report and completed the request.
    done = await detail(app, client, request_id)
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert templates(gateway)["request_completed"] == 1
    [postponed] = notices(gateway, "request_postponed")
    assert "2026-12-18" in postponed and POSTPONE["reason"] in postponed


async def test_a_refusal_proposed_meanwhile_is_not_swept_aside_by_resuming(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker
) -> None:
    request_id = await in_review(app, client, "access")
    base = f"/v1/staff/requests/{request_id}"
    officer = staff(app, *OFFICER, sub="officer-1")
    assert (await client.post(f"{base}/extend", json=POSTPONE, headers=officer)).status_code == 200
    proposal = {"ground": "pipa_35_4_1", "explanation": "법률에 따라 제한됩니다."}
    proposed = await client.post(f"{base}/propose-refusal", json=proposal, headers=officer)
    assert proposed.status_code == 200
    # The proposer cannot approve it away by resuming; another officer decides.
    own = await client.post(f"{base}/resume", json={}, headers=officer)
    assert own.status_code == 403 and own.json()["code"] == "four-eyes"
    assert (await detail(app, client, request_id))["status"] == "in_review"
    colleague = staff(app, *OFFICER, sub="officer-2")
    resumed = await client.post(f"{base}/resume", json={}, headers=colleague)
    assert resumed.status_code == 200 and resumed.json()["status"] == "in_progress"
    await worker.drain()
    assert (await detail(app, client, request_id))["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "refused_items"),
    [
        (
            {"type": "deletion", "items": ["email", "name"]},
            [
                {"item": "email", "ground": "pipa_36_1_proviso"},
                {"item": "name", "ground": "pipa_36_1_proviso"},
            ],
        ),
        (
            {"type": "deletion"},
            [{"item": code, "ground": "pipa_36_1_proviso"} for code in sorted(ITEMS)],
        ),
        (
            {
                "type": "correction",
                "corrections": [{"item": "address", "new_value": "서울특별시 강서구 공항대로 247"}],
            },
            [{"item": "address", "ground": "policy_6_3"}],
        ),
        (
            {"type": "suspension", "purposes": ["marketing"]},
            [{"item": "marketing", "ground": "pipa_37_2_1"}],
        ),
        (
            {"type": "consent_withdrawal", "purposes": ["marketing", "third_party_provision"]},
            [
                {"item": "marketing", "ground": "pipa_37_2_1"},
                {"item": "third_party_provision", "ground": "pipa_37_2_1"},
            ],
        ),
        (
            # Access to everything withheld, named by category: nothing left to show.
            {"type": "access"},
            [{"item": code, "ground": "pipa_35_4_1"} for code in sorted(CATEGORIES)],
        ),
    ],
)
async def test_refusing_every_part_is_a_refusal_with_its_notice(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    body: dict[str, Any],
    refused_items: list[dict[str, str]],
) -> None:
    subject = await make_subject(app, PHONE)
    created = await submit(client, subject, body)
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    await client.post(f"/v1/staff/requests/{request_id}/review", headers=staff(app, *AGENT))
    decision = {"refused_items": refused_items, "explanation": "모두 거절합니다."}
    await propose_refusal(app, client, request_id, decision)
    response = await client.post(
        f"/v1/staff/requests/{request_id}/approve",
        json=decision,
        headers=staff(app, *OFFICER, sub="officer-1"),
    )
    assert response.status_code == 200, response.text
    mine = (await client.get(f"/v1/requests/{request_id}", headers=subject.headers)).json()
    assert mine["status"] == "refused"
    assert mine["decision"]["result"] == "refused"
    assert [r["item"] for r in mine["decision"]["refusals"]] == [r["item"] for r in refused_items]
    await worker.drain()
    decided = [
        r.json() for r in gateway.requests("/sms") if r.json()["template"] == "request_decided"
    ]
    assert len(decided) == 1
    assert "결정: 거절" in decided[0]["body"] and "118" in decided[0]["body"]
    # No job ran: nothing was carried out, no completion notice, the holds are released.
    assert templates(gateway)["request_completed"] == 0
    staff_view = await detail(app, client, request_id)
    assert staff_view["fulfilment_state"] is None
    for purpose in ("marketing", "delivery"):
        check = await client.post(
            "/v1/usage-checks",
            json={"identifiers": {"phone": PHONE}, "purpose": purpose},
            headers=staff(app, "service", sub="svc-hub"),
        )
        assert check.json()["allowed"] is True, (purpose, check.json())


async def test_a_refusal_needs_two_people(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    request_id = await in_review(app, client, "deletion")
    base = f"/v1/staff/requests/{request_id}"
    officer = staff(app, *OFFICER, sub="officer-1")
    refusal = {"ground": "pipa_36_1_proviso", "explanation": "5년간 보관합니다."}
    alone = await client.post(f"{base}/refuse", json=refusal, headers=officer)
    assert alone.status_code == 403
    assert alone.json()["code"] == "four-eyes"
    partial = {
        "refused_items": [{"item": "email", "ground": "pipa_36_1_proviso"}],
        "explanation": "보관합니다.",
    }
    alone_partial = await client.post(f"{base}/approve", json=partial, headers=officer)
    assert alone_partial.status_code == 403
    assert (await detail(app, client, request_id))["status"] == "in_review"
    # The officer proposes; the same officer cannot then decide; a colleague does.
    proposed = await client.post(f"{base}/propose-refusal", json=refusal, headers=officer)
    assert proposed.status_code == 200
    own = await client.post(f"{base}/refuse", json=refusal, headers=officer)
    assert own.status_code == 403
    admin = await client.post(f"{base}/refuse", json=refusal, headers=staff(app, "admin"))
    assert admin.status_code == 403  # an admin is not a decider
    await worker.drain()
    assert templates(gateway)["request_decided"] == 0  # nothing decided yet, nothing sent
    colleague = staff(app, *OFFICER, sub="officer-2")
    decided = await client.post(f"{base}/refuse", json=refusal, headers=colleague)
    assert decided.status_code == 200
    assert decided.json()["status"] == "refused"
    history = (await detail(app, client, request_id))["history"]
    [refused] = [event for event in history if event["action"] == "refuse"]
    assert refused["actor"] == "staff:officer-2"
    assert refused["details"]["proposed_by"] == "staff:officer-1"
    await worker.drain()
    [body] = notices(gateway, "request_decided")
    assert "결정: 거절" in body and "5년간 보관합니다." in body


@pytest.mark.parametrize("settings_overrides", [{"single_officer_refusals": True}], indirect=True)
async def test_one_officer_may_refuse_alone_where_the_company_allows_it(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    officer = staff(app, *OFFICER, sub="officer-1")
    whole = await in_review(app, client, "deletion")
    refused = await client.post(
        f"/v1/staff/requests/{whole}/refuse",
        json={"ground": "pipa_36_1_proviso", "explanation": "5년간 보관합니다."},
        headers=officer,
    )
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "refused"
    # A partial refusal alone too; the decision still names the one officer who made it.
    subject = await make_subject(app, "+821055550077")
    created = await submit(client, subject, {"type": "deletion", "items": ["email", "name"]})
    part = created.json()["id"]
    await client.post(f"/v1/staff/requests/{part}/review", headers=staff(app, *AGENT))
    approved = await client.post(
        f"/v1/staff/requests/{part}/approve",
        json={
            "refused_items": [{"item": "name", "ground": "pipa_36_1_proviso"}],
            "explanation": "이름은 보관합니다.",
        },
        headers=officer,
    )
    assert approved.status_code == 200, approved.text
    partial = await detail(app, client, part)
    assert partial["status"] == "in_progress"
    assert partial["decision"]["result"] == "partially_approved"
    [decision] = [event for event in partial["history"] if event["action"] == "approve"]
    assert decision["actor"] == "staff:officer-1" and "proposed_by" not in decision["details"]
    # Still not an agent's decision, and not the decision of an officer on their own proposal.
    third = await in_review(app, client, "correction")
    denied = await client.post(
        f"/v1/staff/requests/{third}/refuse",
        json={"ground": "policy_6_3", "explanation": "거절합니다."},
        headers=staff(app, *AGENT),
    )
    assert denied.status_code == 403
    await worker.drain()
    decided = notices(gateway, "request_decided")
    assert len(decided) == 2 and all("1833-6972" in body for body in decided)


def notices(gateway: RecordingServer, template: str) -> list[str]:
    return [r.json()["body"] for r in gateway.requests("/sms") if r.json()["template"] == template]


async def usage_allowed(app: FastAPI, client: httpx.AsyncClient, purpose: str) -> bool:
    check = await client.post(
        "/v1/usage-checks",
        json={"identifiers": {"phone": PHONE}, "purpose": purpose},
        headers=staff(app, "service", sub="svc-hub"),
    )
    assert check.status_code == 200, check.text
    return bool(check.json()["allowed"])


@pytest.mark.parametrize(
    ("request_type", "who", "locale"),
    [
        ("correction", "subject", "ko"),
        ("correction", "agent", "en"),
        ("deletion", "agent", "ko"),
        ("access", "subject", "en"),
        ("suspension", "subject", "ko"),
        ("consent_withdrawal", "agent", "ko"),
        ("consent_withdrawal", "subject", "en"),
    ],
)
async def test_a_withdrawal_is_confirmed_to_the_subject(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    request_type: str,
    who: str,
    locale: str,
) -> None:
    subject = await make_subject(app, PHONE)
    created = await submit(client, subject, {**BODIES[request_type], "locale": locale})
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    if request_type == "consent_withdrawal":
        assert not await usage_allowed(app, client, "marketing")  # suspended from intake
    if who == "subject":
        url, headers = f"/v1/requests/{request_id}/withdraw", subject.headers
    else:
        url, headers = f"/v1/staff/requests/{request_id}/withdraw", staff(app, *AGENT)
    assert (await client.post(url, headers=headers)).status_code == 200
    await worker.drain()
    [body] = notices(gateway, "request_withdrawn")
    assert notices(gateway, "request_completed") == []
    if locale == "ko":
        # Whole sentences: "철회되었습니다. 더 이상 처리하지 않습니다." (never "않으며.").
        assert "철회되었습니다. 더 이상 처리하지 않습니다." in body and "않으며." not in body
        assert ("고객센터에 말씀하신 대로" in body) is (who == "agent")
        held = "정정을 기다리며 멈추었던 개인정보의 이용도 다시 시작됩니다."
        consent = "동의는 철회 요청 전과 같이 유지됩니다."
        contact = "상황관리팀 (02-2620-1100)"
    else:
        assert "was withdrawn" in body and "We will not carry it out" in body
        assert ("as you asked our support center" in body) is (who == "agent")
        held = "the data held back while the correction was pending is in use again"
        consent = "Your consent stays as it was before the request."
        contact = "Situation Management Team (+82-2-2620-1100)"
        assert "철회" not in body
    assert (held in body) is (request_type == "correction")
    assert (consent in body) is (request_type == "consent_withdrawal")
    assert contact in body
    if request_type == "consent_withdrawal":
        assert await usage_allowed(app, client, "marketing")  # the consent stands again


@pytest.mark.parametrize(
    ("request_type", "locale"), [("correction", "ko"), ("deletion", "ko"), ("correction", "en")]
)
async def test_an_approval_under_way_is_announced(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    request_type: str,
    locale: str,
) -> None:
    subject = await make_subject(app, PHONE)
    created = await submit(client, subject, {**BODIES[request_type], "locale": locale})
    request_id = created.json()["id"]
    agent = staff(app, *AGENT)
    assert (
        await client.post(f"/v1/staff/requests/{request_id}/review", headers=agent)
    ).status_code == 200
    approved = await client.post(f"/v1/staff/requests/{request_id}/approve", json={}, headers=agent)
    assert approved.status_code == 200
    await worker.drain()
    [body] = notices(gateway, "request_approved")
    if locale == "ko":
        assert "승인되어 처리하고 있습니다" in body and "2026-12-06까지" in body
        held_back = "정정이 끝날 때까지 해당 개인정보는 이용하거나 제3자에게 제공하지 않습니다"
    else:
        assert "was approved and is being carried out" in body and "by 2026-12-06" in body
        held_back = "Until the correction is done, the data concerned is neither used nor provided"
    assert (held_back in body) is (request_type == "correction")
    # The approval is announced once, and the completion is a notice of its own.
    assert len(notices(gateway, "request_approved")) == 1


@pytest.mark.parametrize(
    "settings_overrides",
    [{"contact_text_ko": "개인정보 보호팀 (02-0000-1234)", "contact_text_en": "Privacy Team"}],
    indirect=True,
)
@pytest.mark.parametrize("locale", ["ko", "en"])
async def test_a_refusal_notice_names_the_external_remedies(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    locale: str,
) -> None:
    subject = await make_subject(app, PHONE)
    created = await submit(client, subject, {**BODIES["deletion"], "locale": locale})
    request_id = created.json()["id"]
    await client.post(f"/v1/staff/requests/{request_id}/review", headers=staff(app, *AGENT))
    refusal = {"ground": "pipa_36_1_proviso", "explanation": "5년간 보관합니다."}
    await propose_refusal(app, client, request_id, refusal)
    refused = await client.post(
        f"/v1/staff/requests/{request_id}/refuse",
        json=refusal,
        headers=staff(app, *OFFICER, sub="officer-1"),
    )
    assert refused.status_code == 200
    await worker.drain()
    [body] = notices(gateway, "request_decided")
    for number in ("118", "1833-6972", "182", "1301"):
        assert number in body
    if locale == "ko":
        for name in ("개인정보침해신고센터", "개인정보분쟁조정위원회", "경찰청", "대검찰청"):
            assert name in body
        assert "제38조제5항" in body and "2026-12-26까지" in body
        assert "개인정보 보호팀 (02-0000-1234)" in body  # the contact is the setting's
    else:
        for name in ("Infringement Report Center", "Dispute Mediation Committee", "Police"):
            assert name in body
        assert "Art. 38(5)" in body and "until 2026-12-26" in body
        assert "Privacy Team" in body

    # The objection is dismissed: the refusal stands, and the remedies are named again.
    objected = await client.post(
        f"/v1/requests/{request_id}/objection",
        json={"reason": "보관 근거를 알고 싶습니다."},
        headers=subject.headers,
    )
    assert objected.status_code == 201, objected.text
    dismissed = await client.post(
        f"/v1/staff/objections/{objected.json()['id']}/decide",
        json={"outcome": "dismissed", "explanation": "전자상거래법에 따라 보관합니다."},
        headers=staff(app, *OFFICER, sub="officer-2"),
    )
    assert dismissed.status_code == 200, dismissed.text
    await worker.drain()
    [outcome] = notices(gateway, "objection_decided")
    assert ("기각" if locale == "ko" else "dismissed") in outcome
    assert "1833-6972" in outcome and "118" in outcome and "1301" in outcome
