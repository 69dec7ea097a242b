"""Each notice reaches a real gateway on 127.0.0.1 once, in Korean by default, with its facts."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.models import DsrRequest
from app.observability import JsonFormatter
from app.outbox.worker import Worker
from app.requests import notices as request_notices
from tests.support.lifecycle import (
    AGENT,
    OFFICER,
    drive,
    make_subject,
    new_request,
    propose_refusal,
    staff,
)
from tests.support.servers import RecordingServer

PHONE = "+821012345678"


@pytest.fixture
def settings_overrides(gateway: RecordingServer) -> dict[str, Any]:
    return {
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
        "auto_approve_access": False,
    }


def sent(gateway: RecordingServer, path: str = "/sms") -> list[dict[str, Any]]:
    return [received.json() for received in gateway.requests(path)]


async def test_received_notice_in_korean_with_the_due_date(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    subject = await make_subject(app, PHONE)
    request_id = await new_request(client, subject, "correction")
    await worker.drain()
    [notice] = sent(gateway)
    assert notice["to"] == PHONE and notice["template"] == "request_received"
    text = notice["body"]
    assert "개인정보 정정 요청" in text
    assert f"접수번호 {uuid.UUID(request_id).hex[:8].upper()}" in text
    assert "2026-11-26에 접수" in text and "2026-12-06까지" in text
    assert "상황관리팀 (02-2620-1100)" in text
    assert "공항대로" not in text  # the correction value is not repeated in notices


async def test_english_email_for_an_english_request(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    subject = await make_subject(app, "someone@example.com", "email")
    response = await client.post(
        "/v1/requests",
        json={"type": "suspension", "purposes": ["marketing"], "locale": "en"},
        headers=subject.headers,
    )
    assert response.status_code == 201
    await worker.drain()
    [notice] = sent(gateway, "/email")
    assert notice["to"] == "someone@example.com"
    assert notice["subject"] == (
        "[QXPRESS] Your personal data suspension of processing request was received"
    )
    assert "We will answer by 2026-12-06 (Korea time)" in notice["body"]
    assert "Situation Management Team (+82-2-2620-1100)" in notice["body"]


async def test_every_notice_of_a_request_goes_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    subject = await make_subject(app, PHONE)
    request_id = await new_request(client, subject, "access")
    base = f"/v1/staff/requests/{request_id}"
    officer = staff(app, *OFFICER, sub="officer-1")
    await client.post(f"{base}/review", headers=staff(app, *AGENT))
    extended = await client.post(
        f"{base}/extend",
        json={
            "reason": "다른 법령상 보관 의무를 확인하고 있습니다.",
            "new_due_at": "2026-12-18T10:00:00+09:00",
        },
        headers=officer,
    )
    assert extended.status_code == 200
    refusal = {"ground": "pipa_35_4_1", "explanation": "법률에 따라 열람이 제한됩니다."}
    await propose_refusal(app, client, request_id, refusal)
    refused = await client.post(f"{base}/refuse", json=refusal, headers=officer)
    assert refused.status_code == 200
    objection = await client.post(
        f"/v1/requests/{request_id}/objection",
        json={"reason": "보관 기간이 지났다고 생각합니다."},
        headers=subject.headers,
    )
    assert objection.status_code == 201
    decided = await client.post(
        f"/v1/staff/objections/{objection.json()['id']}/decide",
        json={"outcome": "dismissed", "explanation": "보관 기간이 남아 있습니다."},
        headers=staff(app, *OFFICER, sub="officer-2"),
    )
    assert decided.status_code == 200
    await worker.drain()
    await worker.drain()
    notices = {notice["template"]: notice["body"] for notice in sent(gateway)}
    assert Counter(notice["template"] for notice in sent(gateway)) == {
        "request_received": 1,
        "request_postponed": 1,
        "request_decided": 1,
        "objection_received": 1,
        "objection_decided": 1,
    }
    assert "2026-12-18(으)로 연장" in notices["request_postponed"]
    assert "사유: 다른 법령상 보관 의무를 확인하고 있습니다." in notices["request_postponed"]
    decided_text = notices["request_decided"]
    assert "결정: 거절" in decided_text
    assert "법률에 따라 열람이 금지되거나 제한되는 경우" in decided_text
    assert "개인정보 보호법 제35조제4항제1호" in decided_text
    assert "설명: 법률에 따라 열람이 제한됩니다." in decided_text
    # Refused on 26 Nov: objections until the end of 26 Dec (30 days), via the app or the team.
    assert "2026-12-26까지 앱 또는 상황관리팀 (02-2620-1100)" in decided_text
    assert "제38조제5항" in decided_text
    assert "2026-12-06까지 검토 결과" in notices["objection_received"]
    assert "기각" in notices["objection_decided"]

    # Queueing the same notices again sends nothing new.
    async with app.state.db.transaction() as session:
        request = await session.get(DsrRequest, uuid.UUID(request_id))
        assert request is not None
        again = await request_notices.queue_request_notice(
            session,
            crypto=app.state.crypto,
            settings=app.state.settings,
            request=request,
            template="request_received",
            key="received",
            now=app.state.clock.now(),
        )
    assert again is None
    await worker.drain()
    assert len(sent(gateway)) == 5
    # Nothing personal in the logs: not the number, not the explanations or the reason.
    for secret in ("12345678", "열람이 제한됩니다", "보관 기간이 지났다"):
        assert secret not in caplog.text
    formatted = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "12345678" not in formatted


async def test_completion_notices_full_and_partial(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker, gateway: RecordingServer
) -> None:
    full = await make_subject(app, PHONE)
    partial = await make_subject(app, "+821077778888")
    full_id = await new_request(client, full, "access")
    partial_id = await new_request(client, partial, "correction")
    await drive(app, full_id, "completed")
    await drive(app, partial_id, "partially_completed")
    await worker.drain()
    by_phone = {(notice["to"], notice["template"]): notice["body"] for notice in sent(gateway)}
    assert "열람 요청" in by_phone[(PHONE, "request_completed")]
    assert "열람 결과는 앱에서 확인" in by_phone[(PHONE, "request_completed")]
    text = by_phone[("+821077778888", "request_completed")]
    assert "일부 처리되었습니다" in text
    assert "주소: 법령 등에 위반되는 경우" in text
    assert "2026-12-26까지" in text
    assert Counter(notice["template"] for notice in sent(gateway)) == {
        "request_received": 2,
        "request_approved": 1,  # the correction, when it was approved and under way
        "request_completed": 2,
    }
