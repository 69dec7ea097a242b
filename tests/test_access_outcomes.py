"""Access reports the law would accept, end to end through HTTP and the worker (issue 11).

Withheld items are withheld everywhere (Decree Art. 42(1)); every Art. 35(4) ground maps to
itself; what a deletion kept apart under another law is still listed (PIPA Arts. 21(3), 35);
the footer invites an objection only when something was refused, names the policy section 9
remedies and takes its contact text from the notices' setting.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
import yaml
from fastapi import FastAPI

from app.db import Database
from app.demo.load import DEMO_SUBJECT, demo_datamap_text
from app.outbox.worker import Worker
from app.vocabulary import GROUNDS, WITHHOLDING_GROUNDS, WITHHOLDING_TO_REFUSAL_GROUND
from tests.support.lifecycle import AGENT, OFFICER, make_subject, staff
from tests.support.servers import RecordingServer
from tests.test_deletion_flow import DEMO_PHONE, demo_db  # noqa: F401 - fixtures
from tests.test_privacy_pages import post_form, sign_in_as

SEOUL = ZoneInfo("Asia/Seoul")
REPRESENTATIVE_PHONE = "+821055550003"
CONTACT_KO = "개인정보 보호팀 (02-0000-1234)"
CONTACT_EN = "Privacy Team (+82-2-0000-1234)"
REMEDIES_KO = ("118", "1833-6972", "182", "1301", "개인정보분쟁조정위원회", "대검찰청")
REMEDIES_EN = ("118", "1833-6972", "182", "1301", "Dispute Mediation Committee", "Prosecutors")


def _datamap(tmp_path: Path, withhold_customs: str | None = None) -> Path:
    text = demo_datamap_text()
    if withhold_customs:
        data = yaml.safe_load(text)
        reservations = next(c for c in data["collections"] if c["name"] == "intl_reservations")
        for field in reservations["roles"]["customer"]["fields"]:
            if field["item"] == "customs_code":
                field["withhold"] = {"ground": withhold_customs}
        text = yaml.safe_dump(data, allow_unicode=True)
    path = tmp_path / "datamap.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Per-test options (indirect parametrisation): reviewed access, a withheld customs code."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def settings_overrides(
    demo_db: Any,  # noqa: F811
    tmp_path: Path,
    gateway: RecordingServer,
    options: dict[str, Any],
) -> dict[str, Any]:
    return {
        "datamap_path": _datamap(tmp_path, options.get("withhold_customs")),
        "auto_approve_access": not options.get("reviewed"),
        "contact_text_ko": CONTACT_KO,
        "contact_text_en": CONTACT_EN,
        "sms_gateway_url": f"{gateway.url}/sms",
        "email_gateway_url": f"{gateway.url}/email",
    }


REVIEWED = pytest.mark.parametrize("options", [{"reviewed": True}], indirect=True)


def _items_anywhere(report: dict[str, Any]) -> set[str]:
    found = {entry["item"] for entry in report["items"]}
    found |= {item for purpose in report["purposes"] for item in purpose["items"]}
    found |= {entry["item"] for entry in report["retention"]}
    found |= {item for provision in report["third_parties"] for item in provision["items"]}
    return found


async def _report(
    client: httpx.AsyncClient, request_id: str, headers: dict[str, str], lang: str = "ko"
) -> tuple[dict[str, Any], str]:
    response = await client.get(f"/v1/requests/{request_id}/report", headers=headers)
    assert response.status_code == 200, response.text
    page = await client.get(
        f"/v1/requests/{request_id}/report?lang={lang}",
        headers=headers | {"Accept": "text/html"},
    )
    assert page.status_code == 200
    return response.json(), page.text


def _sms(gateway: RecordingServer, template: str) -> list[str]:
    return [r.json()["body"] for r in gateway.requests("/sms") if r.json()["template"] == template]


async def _partially_approved_access(
    app: FastAPI, client: httpx.AsyncClient, refused: list[dict[str, str]], explanation: str
) -> tuple[Any, str]:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    assert created.status_code == 201 and created.json()["status"] == "received"
    request_id = created.json()["id"]
    agent = staff(app, *AGENT, sub="agent-1")
    assert (
        await client.post(f"/v1/staff/requests/{request_id}/review", headers=agent)
    ).status_code == 200
    proposed = await client.post(
        f"/v1/staff/requests/{request_id}/propose-refusal",
        json={"refused_items": refused, "explanation": explanation},
        headers=agent,
    )
    assert proposed.status_code == 200, proposed.text
    approved = await client.post(
        f"/v1/staff/requests/{request_id}/approve",
        json={"refused_items": refused, "explanation": explanation},
        headers=staff(app, *OFFICER, sub="officer-1"),
    )
    assert approved.status_code == 200, approved.text
    return subject, request_id


@pytest.mark.parametrize(
    ("options", "refused", "withholding"),
    [
        ({"reviewed": True}, "customs_code", "art35_4_2"),
        ({"reviewed": True}, "customs_code", "art35_4_1"),
        ({"reviewed": True}, "customs_code", "art35_4_3"),
        # A category refused is each of its items withheld (customs: the customs code).
        ({"reviewed": True}, "customs", "art35_4_2"),
    ],
    indirect=["options"],
)
async def test_a_partial_approval_withholds_the_refused_item_everywhere(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    gateway: RecordingServer,
    refused: str,
    withholding: str,
) -> None:
    explanation = "통관 조사 중인 정보입니다."
    ground = WITHHOLDING_TO_REFUSAL_GROUND[withholding]
    number = withholding.removeprefix("art35_4_")
    subject, request_id = await _partially_approved_access(
        app, client, [{"item": refused, "ground": ground}], explanation
    )
    await worker.drain()

    detail = await client.get(f"/v1/requests/{request_id}", headers=subject.headers)
    assert detail.json()["status"] == "partially_completed"
    report, page = await _report(client, request_id, subject.headers)
    assert "customs_code" not in _items_anywhere(report)
    assert (
        DEMO_SUBJECT.customs_code not in json.dumps(report)
        and DEMO_SUBJECT.customs_code not in page
    )
    # The rest is shown, the customs broker still listed for the items it received.
    assert {"name", "phone", "address"} <= _items_anywhere(report)
    assert DEMO_SUBJECT.name in page
    [withheld] = report["withheld"]
    assert withheld["item"] == "customs_code" and withheld["ground"] == withholding
    assert f"제35조제4항제{number}호" in withheld["ground_label"]["ko"]
    assert f"Art. 35(4){number}" in withheld["ground_label"]["en"]
    assert withheld["explanation"]["ko"] == explanation and explanation in page
    # Something was refused: the footer invites an objection, names the remedies of policy
    # section 9 and the contact of the setting; the API accepts the objection.
    assert "이의를 제기" in page and CONTACT_KO in page
    assert all(remedy in page for remedy in REMEDIES_KO)
    _, english = await _report(client, request_id, subject.headers, lang="en")
    assert "Items withheld" in english and explanation in english
    assert DEMO_SUBJECT.customs_code not in english
    assert "you can object" in english and CONTACT_EN in english
    assert all(remedy in english for remedy in REMEDIES_EN)
    # The subject was told: the decision (what is refused, why) and the completion, with the
    # ground and its source, how to object and the remedies.
    [decided] = _sms(gateway, "request_decided")
    [completed] = _sms(gateway, "request_completed")
    for body in (decided, completed):
        assert "통관" in body and f"제35조제4항제{number}호" in body
        assert "제38조제5항" in body and "1833-6972" in body and CONTACT_KO in body
    assert "일부 처리되었습니다. 열람 결과는 앱에서 확인하실 수 있습니다." in completed
    objection = await client.post(
        f"/v1/requests/{request_id}/objection",
        json={"reason": "통관 번호를 확인하고 싶습니다."},
        headers=subject.headers,
    )
    assert objection.status_code == 201, objection.text
    # The refusal is recorded once, by the decision.
    staff_view = await client.get(
        f"/v1/staff/requests/{request_id}", headers=staff(app, *OFFICER, sub="officer-2")
    )
    refusals = staff_view.json()["decision"]["refusals"]
    assert [(r["item"], r["ground"]) for r in refusals] == [(refused, ground)]
    assert staff_view.json()["fulfilment_refusals"] == []


def test_every_art_35_4_ground_maps_to_the_same_item_of_the_act() -> None:
    for withholding, refusal in WITHHOLDING_TO_REFUSAL_GROUND.items():
        number = withholding.removeprefix("art35_4_")
        assert refusal == f"pipa_35_4_{number}"
        assert f"제35조제4항제{number}호" in GROUNDS[refusal].source_ko
        assert GROUNDS[refusal].applies_to == ("access",)
    assert set(WITHHOLDING_TO_REFUSAL_GROUND) == set(WITHHOLDING_GROUNDS)


@pytest.mark.parametrize("options", [{"withhold_customs": "art35_4_3"}], indirect=True)
async def test_a_withholding_under_item_3_is_recorded_under_item_3(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    created = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    request_id = created.json()["id"]
    await worker.drain()
    detail = await client.get(
        f"/v1/staff/requests/{request_id}", headers=staff(app, *OFFICER, sub="officer-1")
    )
    assert detail.json()["status"] == "partially_completed"
    refusals = detail.json()["fulfilment_refusals"]
    assert [(r["item"], r["ground"]) for r in refusals] == [("customs_code", "pipa_35_4_3")]
    report, _ = await _report(client, request_id, subject.headers)
    assert [(w["item"], w["ground"]) for w in report["withheld"]] == [("customs_code", "art35_4_3")]


async def test_records_kept_under_another_law_are_in_the_next_report(
    app: FastAPI, client: httpx.AsyncClient, worker: Worker
) -> None:
    subject = await make_subject(app, DEMO_PHONE)
    deletion = await client.post("/v1/requests", json={"type": "deletion"}, headers=subject.headers)
    base = f"/v1/staff/requests/{deletion.json()['id']}"
    agent = staff(app, *AGENT, sub="agent-1")
    assert (await client.post(f"{base}/review", headers=agent)).status_code == 200
    assert (await client.post(f"{base}/approve", json={}, headers=agent)).status_code == 200
    await worker.drain()
    deleted = await client.get(f"/v1/requests/{deletion.json()['id']}", headers=subject.headers)
    assert deleted.json()["status"] == "partially_completed"  # some records are kept by law

    created = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    request_id = created.json()["id"]
    await worker.drain()
    report, page = await _report(client, request_id, subject.headers)
    assert report["items"] == [] and report["third_parties"] == []
    retained = {(r["collection"], r["role"]): r for r in report["retained"]}
    assert {"deliveries", "intl_reservations", "email_counseling", "marketing_contacts"} == {
        collection for collection, _ in retained
    }
    contract = retained[("intl_reservations", "customer")]
    assert contract["rule"] == "contracts" and "customs_code" in contract["items"]
    assert contract["kept_until"][:4] in {str(year) for year in range(2027, 2032)}
    assert "Electronic Commerce" in contract["legal_basis"]["en"]
    assert all(not r["provided_to_third_parties"] for r in report["retained"])
    # Item names and dates only: the sealed copies are not opened for the report.
    for value in (DEMO_SUBJECT.name, DEMO_SUBJECT.address, DEMO_SUBJECT.customs_code):
        assert value not in json.dumps(report, ensure_ascii=False) and value not in page
    assert "분리 보관" in page and "제3자에게 제공하지 않음" in page and "법령에 따른 보존" in page
    kept_until = datetime.fromisoformat(contract["kept_until"]).astimezone(SEOUL).date()
    assert f"{contract['legal_basis']['ko']}에 따라 {kept_until}까지 분리 보관" in page
    # Nothing refused: no invitation to object (the API would answer 409), remedies still named.
    assert "이의를 제기" not in page and CONTACT_KO in page
    assert all(remedy in page for remedy in REMEDIES_KO)
    _, english = await _report(client, request_id, subject.headers, lang="en")
    assert f"Kept separately under {contract['legal_basis']['en']} until" in english
    assert str(kept_until) in english and "Not provided to third parties" in english
    assert "you can object" not in english and CONTACT_EN in english
    assert all(remedy in english for remedy in REMEDIES_EN)
    # The privacy center shows the same page, with the same contact setting.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser:
        sign_in_as(browser, subject)
        center = await browser.get(f"/privacy/requests/{request_id}/report")
    assert center.status_code == 200, center.text
    assert "분리 보관" in center.text and CONTACT_KO in center.text
    assert "상황관리팀" not in center.text  # not the built-in default
    objection = await client.post(
        f"/v1/requests/{request_id}/objection", json={"reason": "왜죠"}, headers=subject.headers
    )
    assert objection.status_code == 409


async def test_an_officer_opens_and_hands_over_a_representatives_report(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    db: Database,
    gateway: RecordingServer,
) -> None:
    agent = staff(app, *AGENT, sub="agent-1")
    created = await client.post(
        "/v1/staff/requests",
        json={
            "request": {"type": "access"},
            "identifiers": {"phone": DEMO_SUBJECT.phone},
            "intake_channel": "counter",
            "verification": {
                "method": "representative",
                "relation": "delegate",
                "document_kind": "power_of_attorney",
                "representative_id_check": "id_document_in_person",
            },
            # Notices go to the representative, who has no subject token.
            "notify": {"channel": "sms", "destination": REPRESENTATIVE_PHONE},
        },
        headers=agent,
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    base = f"/v1/staff/requests/{request_id}"
    officer = staff(app, *OFFICER, sub="officer-1")
    assert (await client.post(f"{base}/review", headers=agent)).status_code == 200
    assert (await client.post(f"{base}/approve", json={}, headers=agent)).status_code == 200
    before = await client.get(f"{base}/report", headers=officer)
    assert before.status_code == 404  # not generated yet
    await worker.drain()

    report = await client.get(f"{base}/report", headers=officer)
    assert report.status_code == 200, report.text
    assert report.json()["request_id"] == request_id and report.json()["items"]
    printable = await client.get(f"{base}/report", headers=officer | {"Accept": "text/html"})
    assert printable.headers["content-type"].startswith("text/html")
    assert DEMO_SUBJECT.name in printable.text and CONTACT_KO in printable.text
    # It prints as designed: its own stylesheet is allowed by hash, no script at all.
    policy = printable.headers["content-security-policy"]
    assert "style-src 'sha256-" in policy and "script-src" not in policy
    assert "default-src 'none'" in policy
    # The representative was told the report is handed over, not that it is in the app.
    [completed] = _sms(gateway, "request_completed")
    assert "개인정보 보호 담당자가 방문, 우편 또는 전자우편으로 전해 드립니다" in completed
    assert "앱에서 확인" not in completed
    assert {r.json()["to"] for r in gateway.requests("/sms")} == {REPRESENTATIVE_PHONE}
    handed = await client.post(
        f"{base}/report-handover", json={"method": "post", "note": "등기 1234"}, headers=officer
    )
    assert handed.status_code == 200, handed.text
    assert handed.json()["method"] == "post"
    history = (await client.get(base, headers=officer)).json()["history"]
    [event] = [e for e in history if e["action"] == "report_handed_over"]
    assert event["details"] == {"method": "post"}
    async with db.sessionmaker() as session:
        actions = (
            await session.execute(
                sa.text(
                    "SELECT action, actor FROM audit_entry WHERE target_id = :id"
                    " AND action IN ('report.opened_by_staff', 'request.report_handed_over')"
                ),
                {"id": request_id},
            )
        ).all()
    assert sorted(actions) == [
        ("report.opened_by_staff", "staff:officer-1"),
        ("report.opened_by_staff", "staff:officer-1"),
        ("request.report_handed_over", "staff:officer-1"),
    ]

    # Failure paths: an unknown method changes nothing; other roles may not; an app request
    # is downloaded by its subject, not opened by staff.
    bad = await client.post(f"{base}/report-handover", json={"method": "fax"}, headers=officer)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    for roles in (AGENT, ("admin",)):
        denied = await client.get(f"{base}/report", headers=staff(app, *roles, sub="x"))
        assert denied.status_code == 403
    subject = await make_subject(app, "+821055550002")
    own = await client.post("/v1/requests", json={"type": "access"}, headers=subject.headers)
    await worker.drain()
    refused = await client.get(f"/v1/staff/requests/{own.json()['id']}/report", headers=officer)
    assert refused.status_code == 403 and refused.json()["code"] == "report-not-for-staff"
    # Nor one made in the privacy center (the web form, verified by one-time code).
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser:
        sign_in_as(browser, await make_subject(app, "+821055550004"))
        submitted = await post_form(browser, "/privacy/requests/new/access", {"step": "submit"})
        assert submitted.status_code == 303, submitted.text
    web_id = submitted.headers["location"].split("/")[-1].split("?")[0]
    await worker.drain()
    web = await client.get(f"/v1/staff/requests/{web_id}/report", headers=officer)
    assert web.status_code == 403 and web.json()["code"] == "report-not-for-staff"
    missing = await client.post(
        "/v1/staff/requests/00000000-0000-0000-0000-000000000000/report-handover",
        json={"method": "counter"},
        headers=officer,
    )
    assert missing.status_code == 404
