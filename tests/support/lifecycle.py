"""Helpers for lifecycle tests: verified subjects, staff, requests driven to a given state."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.audit.actors import Actor
from app.requests import completion, decisions
from app.subjects import identifiers

AGENT = ("support_agent",)
OFFICER = ("privacy_officer",)

CORRECTION = {
    "type": "correction",
    "corrections": [
        {"item": "address", "new_value": "서울특별시 강서구 공항대로 247, 101동 202호"}
    ],
}
BODIES: dict[str, dict[str, Any]] = {
    "access": {"type": "access"},
    "correction": CORRECTION,
    "deletion": {"type": "deletion", "items": ["email"]},
    "suspension": {"type": "suspension", "purposes": ["marketing"]},
    "consent_withdrawal": {"type": "consent_withdrawal", "purposes": ["marketing"]},
}


class Subject:
    """A data subject who verified an identifier: the row exists and a token is issued."""

    def __init__(self, headers: dict[str, str], blind_index: str, value: str) -> None:
        self.headers = headers
        self.blind_index = blind_index
        self.value = value


async def make_subject(app: FastAPI, value: str = "+821012345678", kind: str = "phone") -> Subject:
    crypto, clock = app.state.crypto, app.state.clock
    async with app.state.db.transaction() as session:
        row = await identifiers.remember_identifier(
            session,
            crypto=crypto,
            kind=kind,  # type: ignore[arg-type]
            value=value,
            now=clock.now(),
        )
    token = app.state.tokens.issue_subject_token(
        blind_index=row.blind_index,
        identifier_kinds=[kind],
        now=clock.now(),
        ttl=timedelta(days=400),
    )
    return Subject({"Authorization": f"Bearer {token}"}, row.blind_index, value)


def staff(app: FastAPI, *roles: str, sub: str = "agent-1") -> dict[str, str]:
    token = app.state.tokens.issue_staff_token(
        sub=sub, roles=list(roles), now=app.state.clock.now(), ttl=timedelta(days=400)
    )
    return {"Authorization": f"Bearer {token}"}


async def submit(
    client: httpx.AsyncClient, subject: Subject, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post("/v1/requests", json=body, headers=subject.headers | headers)


async def new_request(
    client: httpx.AsyncClient, subject: Subject, request_type: str = "correction"
) -> str:
    response = await submit(client, subject, BODIES[request_type])
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def drive(app: FastAPI, request_id: str, status: str) -> None:
    """Move a received correction/deletion/... request to ``status`` with the services."""
    rid = uuid.UUID(request_id)
    crypto, settings, now = app.state.crypto, app.state.settings, app.state.clock.now()
    agent = Actor.staff("agent-1", frozenset(AGENT), "127.0.0.1")
    officer = Actor.staff("officer-1", frozenset(OFFICER), "127.0.0.1")
    async with app.state.db.transaction() as session:
        if status == "received":
            return
        if status == "withdrawn":
            await decisions.withdraw_request(
                session, crypto=crypto, settings=settings, now=now, request_id=rid, actor=agent
            )
            return
        await decisions.start_review(session, crypto=crypto, now=now, request_id=rid, actor=agent)
        if status == "in_review":
            return
        if status == "refused":
            await decisions.propose_refusal(
                session,
                crypto=crypto,
                now=now,
                request_id=rid,
                actor=agent,
                ground="identity_not_verified",
                refused_items=None,
                explanation="신분 확인 서류가 제출되지 않았습니다.",
            )
            await decisions.refuse_request(
                session,
                crypto=crypto,
                settings=settings,
                now=now,
                request_id=rid,
                actor=officer,
                ground="identity_not_verified",
                explanation="신분 확인 서류가 제출되지 않았습니다.",
            )
            return
        await decisions.approve_request(
            session, crypto=crypto, settings=settings, now=now, request_id=rid, actor=agent
        )
        if status == "in_progress":
            return
        await completion.complete_request(
            session,
            crypto=crypto,
            settings=settings,
            now=now,
            request_id=rid,
            outcome="partially_completed" if status == "partially_completed" else "completed",
            result={"records": 2},
            refused_items=[{"item": "address", "ground": "policy_6_3"}]
            if status == "partially_completed"
            else None,
        )


async def propose_refusal(
    app: FastAPI, client: httpx.AsyncClient, request_id: str, body: dict[str, Any]
) -> None:
    """An agent proposes the refusal a privacy officer then decides (the two-person rule)."""
    proposal = {key: value for key, value in body.items() if key != "explanation"}
    response = await client.post(
        f"/v1/staff/requests/{request_id}/propose-refusal",
        json={**proposal, "explanation": body.get("explanation") or "제안합니다."},
        headers=staff(app, *AGENT, sub="agent-proposer"),
    )
    assert response.status_code == 200, response.text
