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
from app.vocabulary import ITEMS
from tests.support.lifecycle import (
    AGENT,
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
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "auto_approve_access": False,
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


@pytest.mark.parametrize("request_type", ["correction", "deletion", "suspension"])
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
    assert "35(3)" in response.json()["detail"]
    after = await detail(app, client, request_id)
    assert after["due_at"] == before["due_at"] and after["extensions"] == 0
    await worker.drain()
    assert templates(gateway)["request_postponed"] == 0


async def test_no_postponement_after_the_due_date(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    request_id = await in_review(app, client, "access")
    clock.advance(timedelta(days=11))
    late = await client.post(
        f"/v1/staff/requests/{request_id}/extend",
        json={**POSTPONE, "new_due_at": "2027-01-10T10:00:00+09:00"},
        headers=staff(app, *OFFICER, sub="officer-1"),
    )
    assert late.status_code == 409
    assert late.json()["code"] == "postponement-not-allowed"
    assert (await detail(app, client, request_id))["extensions"] == 0


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
    assert "결정: 거절" in decided[0]["body"]


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
    colleague = staff(app, *OFFICER, sub="officer-2")
    decided = await client.post(f"{base}/refuse", json=refusal, headers=colleague)
    assert decided.status_code == 200
    assert decided.json()["status"] == "refused"


@pytest.mark.parametrize(
    "settings_overrides", [{"single_officer_refusals": True, "auto_approve_access": False}]
)
async def test_one_officer_may_refuse_alone_where_the_company_allows_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    request_id = await in_review(app, client, "deletion")
    refused = await client.post(
        f"/v1/staff/requests/{request_id}/refuse",
        json={"ground": "pipa_36_1_proviso", "explanation": "5년간 보관합니다."},
        headers=staff(app, *OFFICER, sub="officer-1"),
    )
    assert refused.status_code == 200, refused.text


def notices(gateway: RecordingServer, template: str) -> list[str]:
    return [r.json()["body"] for r in gateway.requests("/sms") if r.json()["template"] == template]


@pytest.mark.parametrize("who", ["subject", "agent"])
async def test_a_withdrawal_is_confirmed_to_the_subject(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer, who: str
) -> None:
    subject = await make_subject(app, PHONE)
    request_id = await new_request(client, subject, "correction")
    if who == "subject":
        url, headers = f"/v1/requests/{request_id}/withdraw", subject.headers
    else:
        url, headers = f"/v1/staff/requests/{request_id}/withdraw", staff(app, *AGENT)
    assert (await client.post(url, headers=headers)).status_code == 200
    await worker.drain()
    [body] = notices(gateway, "request_withdrawn")
    assert "철회되었습니다" in body
    assert ("고객센터에 말씀하신 대로" in body) is (who == "agent")
    assert "이용도 다시 시작됩니다" in body  # the correction's restriction is lifted


@pytest.mark.parametrize("request_type", ["correction", "deletion"])
async def test_an_approval_under_way_is_announced(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    request_type: str,
) -> None:
    request_id = await in_review(app, client, request_type)
    approved = await client.post(
        f"/v1/staff/requests/{request_id}/approve", json={}, headers=staff(app, *AGENT)
    )
    assert approved.status_code == 200
    await worker.drain()
    [body] = notices(gateway, "request_approved")
    assert "승인되어 처리하고 있습니다" in body and "2026-12-06까지" in body
    held_back = "정정이 끝날 때까지 해당 개인정보는 이용하거나 제3자에게 제공하지 않습니다"
    assert (held_back in body) is (request_type == "correction")


async def test_a_refusal_notice_names_the_external_remedies(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    request_id = await in_review(app, client, "deletion")
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
    for remedy in ("118", "1833-6972", "182", "1301", "개인정보분쟁조정위원회"):
        assert remedy in body
    assert "제38조제5항" in body
