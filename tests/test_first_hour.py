"""What a new user meets in the first hour: answers that say what to fix (issue 17)."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import app as app_package
from app.clock import FrozenClock
from app.errors import DomainError, WebhookUrlRefused
from app.outbox.jobs import PeriodicJob, Registry, WorkerContext
from app.outbox.worker import Worker
from app.problems import _HTTP_CODES
from app.requests.bodies import normalise_new_value
from app.requests.lifecycle import CANNOT, TRANSITIONS
from app.requests.sla import send_daily_digest
from app.vocabulary import ITEMS
from app.webhooks.url_guard import check_webhook_url
from app.worker import build_registry
from tests.support.lifecycle import AGENT, OFFICER, make_subject, new_request, staff, submit
from tests.support.servers import RecordingServer
from tests.support.webhooks import attempts, notify, register

ERRORS_DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
FULFILMENT_DOC = ERRORS_DOC.with_name("fulfilment.md")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhooks": True, "webhook_processor_cache_seconds": 0}


# --- 415 for a body that is not sent as JSON ---------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_not_sent_as_json_is_415_naming_application_json(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post(
        "/v1/verifications",
        content=b'{"channel": "sms", "destination": "010-5555-0001"}',
        headers=headers,
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "unsupported-media-type"
    assert "application/json" in problem["detail"]
    assert response.headers["accept-post"] == "application/json"
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_a_json_body_with_the_wrong_shape_is_still_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/verifications", json=["sms"])
    assert response.status_code == 422
    assert response.json()["code"] == "validation-failed"


# --- validation errors that point at the field ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "pointer", "message"),
    [
        ({"type": "suspension"}, "/purposes", "Required when type is suspension."),
        (
            {"type": "access", "purposes": ["marketing"]},
            "/purposes",
            "Not allowed when type is access.",
        ),
        ({"type": "correction"}, "/corrections", "Required when type is correction."),
        (
            {
                "type": "correction",
                "corrections": [
                    {"item": "name", "new_value": "김철수"},
                    {"item": "name", "new_value": "김영희"},
                ],
            },
            "/corrections",
            "Entry 1 names the same item and record as an earlier one.",
        ),
    ],
)
async def test_body_errors_point_at_the_field_in_plain_words(
    app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any], pointer: str, message: str
) -> None:
    subject = await make_subject(app)
    response = await submit(client, subject, body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"pointer": pointer, "location": "body", "message": message, "type": "value_error"}
    ]
    assert "Value error" not in response.text


async def test_malformed_json_gives_the_position_in_detail_not_as_a_pointer(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/verifications",
        content=b'{"channel": "sms",\n "destination": }',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation-failed"
    assert problem["detail"] == (
        "The body is not valid JSON: Expecting value at character 35 (line 2, column 17)."
    )
    assert all("pointer" not in error for error in problem["errors"])


# --- extend: a plain date is the end of that Seoul day ----------------------------------------


async def test_extend_accepts_a_plain_date_and_points_at_a_bad_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "access")
    url = f"/v1/staff/requests/{request_id}/extend"
    officer = staff(app, *OFFICER)
    reason = "보관 의무 확인에 시간이 필요합니다."
    naive = await client.post(
        url, json={"reason": reason, "new_due_at": "2026-12-20T12:00:00"}, headers=officer
    )
    assert naive.status_code == 422
    assert [error["pointer"] for error in naive.json()["errors"]] == ["/new_due_at"]
    ok = await client.post(
        url, json={"reason": reason, "new_due_at": "2026-12-20"}, headers=officer
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["due_at_local"] == "2026-12-20T23:59:59+09:00"


# --- messages written whole; one code per kind, in one table --------------------------------


def test_every_transition_has_its_refusal_written_whole() -> None:
    assert set(CANNOT) == set(TRANSITIONS)
    assert not [text for text in CANNOT.values() if re.search(r"\b\w+_\w+|reviewd|drawd", text)]


async def test_an_illegal_transition_reads_as_a_sentence(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    request_id = await new_request(client, subject, "deletion")
    first = await client.post(f"/v1/requests/{request_id}/withdraw", headers=subject.headers)
    assert first.status_code == 200
    again = await client.post(f"/v1/requests/{request_id}/withdraw", headers=subject.headers)
    assert again.status_code == 409
    assert again.json()["detail"] == "A request that is withdrawn cannot be withdrawn."


def _domain_error_codes() -> set[str]:
    for module in pkgutil.walk_packages(app_package.__path__, "app."):
        if not module.name.startswith(("app.cli", "app.demo")):
            importlib.import_module(module.name)
    found: set[str] = set()
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        found.add(cls.code)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_in_the_one_table_of_docs_errors_md() -> None:
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", ERRORS_DOC.read_text(), flags=re.MULTILINE)
    assert len(rows) == len(set(rows)), "a code has two rows"
    codes = _domain_error_codes() | {code for code, _ in _HTTP_CODES.values()}
    codes |= {"validation-failed", "internal-error", "payload-too-large"}
    assert sorted(codes - set(rows)) == []  # every code the service answers is documented
    assert sorted(set(rows) - codes) == []  # and the table names no code it never answers


async def test_a_service_error_and_a_schema_error_share_one_code(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    agent = staff(app, "support_agent")
    service = await client.get("/v1/staff/requests?cursor=not-a-cursor", headers=agent)
    schema = await client.get("/v1/staff/requests?status=lost", headers=agent)
    assert service.status_code == schema.status_code == 422
    assert service.json()["code"] == schema.json()["code"] == "validation-failed"


# --- authentication challenges, 413, HEAD -----------------------------------------------------


async def test_no_credentials_get_a_bare_bearer_challenge(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/me")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.get("/v1/me", headers={"Authorization": "Bearer not-a-token"})
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_the_signed_partner_endpoint_sends_no_bearer_challenge(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/partner/acknowledgements",
        content=b'{"webhook_id": "msg_x", "status": "applied"}',
        headers={"content-type": "application/json", "webhook-id": "ack_1"},
    )
    assert response.status_code == 401
    assert response.json()["code"] == "signature-invalid"
    assert "www-authenticate" not in response.headers


async def test_the_413_body_carries_the_request_id(client: httpx.AsyncClient, app: FastAPI) -> None:
    big = b"x" * (app.state.settings.max_body_bytes + 1)
    response = await client.post(
        "/v1/verifications",
        content=big,
        headers={"content-type": "application/json", "x-request-id": "big-1"},
    )
    assert response.status_code == 413
    assert response.json()["request_id"] == "big-1"


async def test_head_healthz_answers_like_get(client: httpx.AsyncClient) -> None:
    response = await client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""


# --- the access report while it is being prepared --------------------------------------------


async def test_a_report_still_being_prepared_is_409_with_the_status_and_retry_after(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker
) -> None:
    subject = await make_subject(app)
    created = await submit(client, subject, {"type": "access"})
    assert created.status_code == 201
    await worker.run_once(kinds=["job"])  # the automatic approval; the report job is queued
    report = await client.get(
        f"/v1/requests/{created.json()['id']}/report", headers=subject.headers
    )
    assert report.status_code == 409
    assert report.headers["retry-after"] == "2"
    problem = report.json()
    assert problem["code"] == "report-not-ready"
    assert problem["current_status"] == "in_progress"
    deletion_id = await new_request(client, subject, "deletion")
    other = await client.get(f"/v1/requests/{deletion_id}/report", headers=subject.headers)
    assert other.status_code == 404  # not an access request: there is no report to wait for


# --- processors: nation codes, cloud metadata -------------------------------------------------


async def test_processor_nation_is_an_iso_3166_alpha_2_code(
    client: httpx.AsyncClient, staff_headers: Any, receiver_url: str
) -> None:
    headers = staff_headers("privacy_officer")
    body = {"code": "hct", "name": "HCT", "webhook_url": receiver_url}
    korea = await client.post("/v1/processors", json={**body, "nation": "Korea"}, headers=headers)
    assert korea.status_code == 422
    assert [error["pointer"] for error in korea.json()["errors"]] == ["/nation"]
    ok = await client.post("/v1/processors", json={**body, "nation": "tw"}, headers=headers)
    assert ok.status_code == 201 and ok.json()["nation"] == "TW"
    patched = await client.patch("/v1/processors/hct", json={"nation": "XX"}, headers=headers)
    assert patched.status_code == 422


@pytest.fixture
def receiver_url() -> Any:
    with RecordingServer() as server:
        yield server.url


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/",
        "http://looks-harmless.example/",
    ],
)
async def test_cloud_metadata_is_refused_even_when_private_webhooks_are_allowed(url: str) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]

    with pytest.raises(WebhookUrlRefused, match="metadata"):
        await check_webhook_url(url, env="dev", allow_private=True, resolver=resolver)
    await check_webhook_url("http://127.0.0.1:8900/hct", env="dev", allow_private=True)


async def test_a_refused_delivery_says_why_in_its_log_line(
    client: httpx.AsyncClient,
    staff_headers: Any,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RecordingServer() as receiver:
        await register(client, staff_headers, code="hct", url=receiver.url)
        message_id = await notify(worker.ctx.db, worker, code="hct")
        assert message_id is not None
        strict = worker.ctx.settings.model_copy(update={"allow_private_webhooks": False})
        ctx = WorkerContext(
            settings=strict,
            db=worker.ctx.db,
            crypto=worker.ctx.crypto,
            clock=worker.ctx.clock,
            http=worker.ctx.http,
        )
        caplog.set_level(logging.INFO, logger="dsr")
        await Worker(ctx, build_registry()).run_once()
    [attempt] = await attempts(worker.ctx.db, message_id)
    assert attempt.outcome == "refused"
    [line] = [r for r in caplog.records if r.__dict__.get("event") == "webhook.attempt"]
    assert line.__dict__["outcome"] == "refused"
    assert line.__dict__["reason"].startswith("destination refused: ")
    assert "private" in line.__dict__["reason"]


# --- periodic jobs log only when they did something -------------------------------------------


async def test_a_periodic_job_that_did_nothing_logs_at_debug_only(
    worker: Worker, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    counts = iter([0, 3])

    async def run(ctx: WorkerContext) -> int:
        return next(counts)

    job = PeriodicJob("probe.every-second", timedelta(seconds=1), run)
    loop = Worker(worker.ctx, Registry(periodic=[job]))
    caplog.set_level(logging.DEBUG, logger="dsr.worker")
    await loop.run_periodic()  # nothing to do: DEBUG, not on a dev console at INFO
    clock.advance(timedelta(seconds=2))
    await loop.run_periodic()  # did something: INFO
    done = [r for r in caplog.records if r.__dict__.get("event") == "worker.periodic"]
    assert [(r.levelno, r.__dict__["count"]) for r in done] == [
        (logging.DEBUG, 0),
        (logging.INFO, 3),
    ]


# --- found by pasting the README's flow: bodies that are optional, pointers into unions ------


async def test_no_body_at_all_is_422_saying_one_is_required_not_415(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    subject = await make_subject(app)
    for headers in ({}, {"content-type": "application/json"}):
        response = await client.post("/v1/requests", headers=subject.headers | headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"] == [
            {
                "pointer": "/",
                "location": "body",
                "message": "A JSON body is required.",
                "type": "missing",
            }
        ]


async def test_approve_and_resume_need_no_body(app: FastAPI, client: httpx.AsyncClient) -> None:
    subject = await make_subject(app)
    deletion = await new_request(client, subject, "deletion")
    agent = staff(app, *AGENT)
    review = await client.post(f"/v1/staff/requests/{deletion}/review", headers=agent)
    assert review.status_code == 200
    approved = await client.post(f"/v1/staff/requests/{deletion}/approve", headers=agent)
    assert approved.status_code == 200, approved.text  # `curl -X POST …/approve`: approve all
    assert approved.json()["status"] == "in_progress"
    plain = await client.post(
        f"/v1/staff/requests/{deletion}/approve",
        content=b"{}",
        headers=agent | {"content-type": "text/plain"},
    )
    assert plain.status_code == 415  # a body may be left out, but one sent must be JSON

    access = await new_request(client, subject, "access")
    officer = staff(app, *OFFICER)
    extended = await client.post(
        f"/v1/staff/requests/{access}/extend",
        json={"reason": "보관 의무 확인에 시간이 필요합니다.", "new_due_at": "2026-12-20"},
        headers=officer,
    )
    assert extended.status_code == 200, extended.text
    resumed = await client.post(f"/v1/staff/requests/{access}/resume", headers=officer)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "in_progress"


async def test_an_error_in_a_tagged_union_points_into_the_body_without_echoing_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = {
        "request": {"type": "access"},
        "identifiers": {"phone": "010-5555-0001"},
        "intake_channel": "phone",
    }
    agent = staff(app, *AGENT)

    async def errors(verification: dict[str, Any]) -> list[dict[str, Any]]:
        response = await client.post(
            "/v1/staff/requests", json={**body, "verification": verification}, headers=agent
        )
        assert response.status_code == 422, response.text
        assert "010-5555" not in response.text
        return [(e["pointer"], e["message"]) for e in response.json()["errors"]]

    assert await errors({"method": "agent", "check": "callback"}) == [
        (
            "/verification/check",  # not /verification/agent/check: "agent" is the tag
            "Input should be 'callback_to_number_on_record', 'id_document_in_person' or "
            "'knowledge_questions'",
        )
    ]
    assert await errors({"method": "robot-010-5555"}) == [
        ("/verification/method", "Input should be 'agent', 'representative'.")
    ]
    assert await errors({}) == [("/verification/method", "Field required.")]


async def test_a_malformed_id_in_the_path_is_not_quoted_back(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post("/v1/staff/requests/n0t-a-uuid/take", headers=staff(app, *AGENT))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error == {
        "pointer": "/path/request_id",
        "location": "path",
        "message": "Input should be a valid UUID.",
        "type": "uuid_parsing",
    }


async def test_a_channel_without_its_address_points_at_the_address(
    client: httpx.AsyncClient, staff_headers: Any, receiver_url: str
) -> None:
    headers = staff_headers("privacy_officer")
    base = {"code": "hct", "name": "HCT", "nation": "TW"}
    webhook = await client.post("/v1/processors", json=base, headers=headers)
    email = await client.post("/v1/processors", json={**base, "channel": "email"}, headers=headers)
    for response, pointer, message in (
        (webhook, "/webhook_url", "Required when channel is webhook."),
        (email, "/email", "Required when channel is email."),
    ):
        assert response.status_code == 422, response.text
        assert [(e["pointer"], e["message"]) for e in response.json()["errors"]] == [
            (pointer, message)
        ]
    created = await client.post(
        "/v1/processors", json={**base, "webhook_url": receiver_url}, headers=headers
    )
    assert created.status_code == 201, created.text
    switched = await client.patch("/v1/processors/hct", json={"channel": "email"}, headers=headers)
    assert switched.status_code == 422
    assert switched.json()["errors"][0]["pointer"] == "/email"
    removed = await client.patch("/v1/processors/hct", json={"name": None}, headers=headers)
    assert removed.status_code == 422
    assert removed.json()["errors"][0]["pointer"] == "/name"


# --- the digest: a warning only when one is missed ----------------------------------------------


async def test_no_officer_address_is_a_warning_only_when_a_digest_is_missed(
    app: FastAPI,
    client: httpx.AsyncClient,
    clock: FrozenClock,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert worker.ctx.settings.privacy_officer_email is None
    caplog.set_level(logging.INFO, logger="dsr")
    assert await send_daily_digest(worker.ctx) == 0  # 10:00 KST, nothing due: nothing to say
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    start = clock.now()
    clock.set(start - timedelta(days=9))
    await new_request(client, await make_subject(app), "deletion")  # due within 2 days
    clock.set(start)
    assert await send_daily_digest(worker.ctx) == 0
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.__dict__["event"] == "sla.digest_unaddressed"


# --- docs/fulfilment.md "Correction values" says what the validator says ----------------------


def test_every_message_quoted_in_correction_values_is_the_validators() -> None:
    text = FULFILMENT_DOC.read_text()
    section = text.split("## Correction values", 1)[1].split("\n## ", 1)[0]
    quoted = {" ".join(q.split()) for q in re.findall(r"\"([A-Z][^\"]*\.)\"", section)}
    assert len(quoted) >= 8
    tries = ["", "12345", "a\u200bb", "x" * 301, "x", "not valid", "P-123", "a@b"]
    said: set[str] = set()
    for item in ITEMS:
        for value in tries:
            try:
                normalise_new_value(item, value)
            except ValueError as exc:
                said.add(str(exc))
    assert sorted(quoted - said) == []
