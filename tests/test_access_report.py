"""The Article 35 access report over the demo dataset: contents, HTML, storage, the worker job."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from sqlmodel import select

from app.clock import FrozenClock
from app.crypto import Crypto
from app.datamap.connectors import SourceUnavailable
from app.datamap.connectors.postgres import connect
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.loader import parse_datamap
from app.datamap.schema import DataMap, Text
from app.db import Database
from app.demo.load import DEMO_SUBJECT, demo_datamap_text, drop_demo, load_demo
from app.errors import Gone, NotFound
from app.fulfilment.access import (
    enqueue_access_fulfilment,
    purge_access_reports,
    subject_blind_index,
)
from app.fulfilment.reports.html import render_access_report_html
from app.fulfilment.reports.store import load_access_report, store_access_report
from app.fulfilment.reports.withholding import Withholding
from app.models import AccessReportRecord, OutboxMessage
from app.outbox import queue
from app.outbox.jobs import WorkerContext
from app.outbox.worker import Worker
from app.schemas.reports import AccessReport
from app.worker import build_registry
from tests.conftest import FROZEN_AT
from tests.support import reports
from tests.support.dsr_source import ReferenceSource, SourceRecord
from tests.support.servers import closed_port

SUBJECT = SubjectIdentifiers(phone=DEMO_SUBJECT.phone_e164, email=DEMO_SUBJECT.email)
TOKEN = "crm-token"


@pytest.fixture(scope="module")
async def demo_loaded(database_url: str) -> AsyncIterator[str]:
    """The demo schema in the test database (read-only for this module), dropped afterwards."""
    conn = await connect(database_url)
    try:
        await load_demo(conn, subjects=40, records_per_subject=3, now=FROZEN_AT, reset=True)
        yield database_url
    finally:
        await drop_demo(conn)
        await conn.close()


def demo_map_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(demo_datamap_text())
    return data


@pytest.fixture
def demo_map() -> DataMap:
    return parse_datamap(demo_map_data())


async def make_report(
    database_url: str,
    settings: Any,
    datamap: DataMap,
    subject: SubjectIdentifiers = SUBJECT,
    **kwargs: Any,
) -> AccessReport:
    return await reports.make_report(database_url, settings, datamap, subject, **kwargs)


def held(report: AccessReport) -> dict[tuple[str, str, str], list[str]]:
    return {(i.collection, i.role, i.item): [v.value for v in i.values] for i in report.items}


async def counterpart_values(database_url: str) -> set[str]:
    """Everything about the other people on the demo subject's deliveries."""
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT recipient_name, recipient_phone, recipient_address FROM demo.deliveries "
            "WHERE sender_phone = $1 UNION ALL "
            "SELECT sender_name, sender_phone, sender_address FROM demo.deliveries "
            "WHERE recipient_phone = $2",
            DEMO_SUBJECT.phone,
            "01055550001",
        )
    finally:
        await conn.close()
    return {value for row in rows for value in row}


async def test_demo_subject_report_lists_every_item_in_both_roles(
    demo_loaded: str, settings: Any, demo_map: DataMap
) -> None:
    report = await make_report(demo_loaded, settings, demo_map)
    items = held(report)
    s = DEMO_SUBJECT
    assert items[("deliveries", "sender", "name")] == [s.name]
    assert items[("deliveries", "sender", "phone")] == [s.phone]
    assert items[("deliveries", "sender", "address")] == [s.address]
    assert items[("deliveries", "recipient", "name")] == [s.name]
    assert items[("deliveries", "recipient", "phone")] == ["01055550001"]
    assert items[("deliveries", "recipient", "address")] == [s.address]
    assert items[("intl_reservations", "customer", "customs_code")] == [s.customs_code]
    assert items[("email_counseling", "customer", "email")] == ["Demo.Subject@Example.com"]
    assert items[("email_counseling", "customer", "inquiry")]
    assert items[("app_installs", "user", "device_serial")] == [s.device_serial]
    assert items[("marketing_contacts", "subscriber", "phone")] == ["01055550001"]
    assert items[("access_logs", "account", "ip_address")] == [s.ip_address]
    records = {(i.collection, i.role): i.records for i in report.items}
    assert records[("deliveries", "sender")] == len(s.sent_with) + 1  # one under way
    assert records[("deliveries", "recipient")] == len(s.received_with)
    categories = {i.item: i.category for i in report.items}
    assert categories["customs_code"] == "customs" and categories["phone"] == "contact"
    assert report.complete and report.subject.identifiers == [
        "010-****-0001",
        "d***********@example.com",
    ]
    assert report.sources[0].name == "demo" and report.sources[0].records == 13


async def test_the_other_party_on_a_delivery_is_left_out(
    demo_loaded: str, settings: Any, demo_map: DataMap
) -> None:
    report = await make_report(demo_loaded, settings, demo_map)
    others = await counterpart_values(demo_loaded)
    assert len(others) >= 15
    text = report.model_dump_json()
    leaked = [value for value in others if value and value in text]
    assert leaked == []


async def test_retention_and_legal_basis_per_item(
    demo_loaded: str, settings: Any, demo_map: DataMap
) -> None:
    report = await make_report(demo_loaded, settings, demo_map)
    rows = {(r.collection, r.item): r for r in report.retention}
    delivery = rows[("deliveries", "phone")]
    assert delivery.rule == "contracts" and delivery.period == "5y"
    assert "전자상거래" in delivery.legal_basis.ko
    assert delivery.records == len(DEMO_SUBJECT.sent_with) + 1 + len(DEMO_SUBJECT.received_with)
    # The newest delivery (the parcel under way, sent yesterday) runs the clock.
    assert delivery.retained_until == (FROZEN_AT - timedelta(days=1)).replace(year=2031)
    logs = rows[("access_logs", "ip_address")]
    assert logs.period == "3m" and "Communications Secrets" in logs.legal_basis.en
    assert rows[("email_counseling", "inquiry")].period == "3y"
    assert rows[("marketing_contacts", "email")].period == "6m"
    app = rows[("app_installs", "device_serial")]
    assert app.period is None and app.retained_until is None
    assert app.period_label.ko == "목적 달성 시까지"
    assert rows[("intl_reservations", "customs_code")].period == "5y"


async def test_processors_and_what_each_received(
    demo_loaded: str, settings: Any, demo_map: DataMap
) -> None:
    report = await make_report(demo_loaded, settings, demo_map)
    provided = {p.processor: p for p in report.third_parties}
    carriers = set(DEMO_SUBJECT.sent_with) | set(DEMO_SUBJECT.received_with) | {"sf-express"}
    assert carriers | {"yuhan-technos", "lguplus", "channel-corp"} == set(provided)
    assert provided["hct"].items == ["address", "name", "phone"]
    assert provided["hct"].name == "HCT" and provided["hct"].nation == "TW"
    assert provided["hanjin"].records == 3  # twice as sender (one under way), once as recipient
    assert provided["yuhan-technos"].items == ["address", "customs_code", "name"]
    assert provided["lguplus"].items == ["name", "phone"]
    assert provided["hct"].first_provided_at is not None
    # sf-express carried a delivery to the subject and the international reservation.
    assert provided["sf-express"].items == ["address", "name", "phone"]
    assert provided["sf-express"].records == 2


async def test_purposes_and_consents(demo_loaded: str, settings: Any, demo_map: DataMap) -> None:
    report = await make_report(demo_loaded, settings, demo_map)
    purposes = {p.purpose: p for p in report.purposes}
    assert set(purposes) == {
        "delivery",
        "customs_clearance",
        "counseling",
        "app_service",
        "marketing",
        "service_logs",
        "third_party_provision",
    }
    assert purposes["third_party_provision"].optional  # a separate consent (policy section 4)
    assert purposes["customs_clearance"].items == ["address", "customs_code", "name", "phone"]
    assert "customs_code" not in purposes["delivery"].items
    assert purposes["marketing"].optional and not purposes["delivery"].optional
    assert [(c.purpose, c.given, c.records) for c in report.consents] == [
        ("third_party_provision", True, 1),
        ("marketing", True, 1),
    ]


async def test_subject_known_by_email_only(
    demo_loaded: str, settings: Any, demo_map: DataMap
) -> None:
    report = await make_report(
        demo_loaded, settings, demo_map, SubjectIdentifiers(email=DEMO_SUBJECT.email)
    )
    collections = {i.collection for i in report.items}
    assert collections == {"email_counseling", "marketing_contacts", "access_logs"}


async def test_withholding_by_decision_and_by_map(
    demo_loaded: str, settings: Any, demo_map: DataMap
) -> None:
    data = demo_map_data()
    inquiry = data["collections"][2]["roles"]["customer"]["fields"][3]
    assert inquiry["item"] == "inquiry"
    inquiry["withhold"] = {"ground": "art35_4_1"}
    datamap = parse_datamap(data)
    report = await make_report(
        demo_loaded,
        settings,
        datamap,
        withheld=[
            Withholding(
                ground="art35_4_2",
                item="ip_address",
                explanation=Text(ko="보안 조사 중", en="Under security investigation"),
            )
        ],
    )
    # A withheld item is in no section (Decree Art. 42(1)), only in ``withheld``.
    by_item = {(i.collection, i.item): i for i in report.items}
    assert ("access_logs", "ip_address") not in by_item
    assert ("email_counseling", "inquiry") not in by_item
    assert not by_item[("access_logs", "access_time")].withheld
    elsewhere = {i for p in report.purposes for i in p.items} | {r.item for r in report.retention}
    assert not {"ip_address", "inquiry"} & elsewhere
    grounds = {(w.item, w.ground) for w in report.withheld}
    assert grounds == {("ip_address", "art35_4_2"), ("inquiry", "art35_4_1")}
    assert DEMO_SUBJECT.ip_address not in report.model_dump_json()
    with pytest.raises(ValueError):
        Withholding(ground="because")


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.sections: list[str] = []
        self.headings: list[str] = []
        self.rows: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self._in_h2 = False
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "html":
            self.lang = attributes.get("lang")
        if tag == "section":
            self.sections.append(attributes.get("id") or "")
        if tag == "h2":
            self._in_h2 = True
        if tag == "tr" and "data-item" in attributes:
            self.rows.append({"section": self.sections[-1], **attributes})
        if tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_h2:
            self.headings.append(data.strip())


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


async def test_html_has_the_five_sections_in_korean_by_default(
    demo_loaded: str, settings: Any, demo_map: DataMap
) -> None:
    report = await make_report(demo_loaded, settings, demo_map)
    page = parse(render_access_report_html(report, settings=settings))
    assert page.lang == "ko"
    assert page.sections == ["items", "purposes", "retention", "third-parties", "consents"]
    assert page.headings == [
        "1. 보유 중인 개인정보 항목",
        "2. 개인정보의 처리 목적",
        "3. 보유 기간 및 근거",
        "4. 제3자 제공 및 처리위탁 현황",
        "5. 동의 현황",
    ]
    item_rows = [r for r in page.rows if r["section"] == "items"]
    assert {(r["data-collection"], r["data-role"]) for r in item_rows} >= {
        ("deliveries", "sender"),
        ("deliveries", "recipient"),
    }
    text = "".join(page.text)
    assert DEMO_SUBJECT.customs_code in text and "보내는 분" in text and "받는 분" in text
    english = parse(render_access_report_html(report, settings=settings, lang="en"))
    assert english.lang == "en"
    assert english.headings[0] == "1. Personal information we hold"
    assert "Sender" in "".join(english.text)


async def test_html_names_each_purposes_items_in_words_not_codes(
    demo_loaded: str, settings: Any, demo_map: DataMap
) -> None:
    report = await make_report(demo_loaded, settings, demo_map)
    for lang, expected in (("ko", "주소, 개인통관고유부호, 이름, 전화번호"), ("en", "Address")):
        html = render_access_report_html(report, settings=settings, lang=lang)
        row = re.search(r'<tr data-purpose="customs_clearance">(.*?)</tr>', html, re.DOTALL)
        assert row, html
        assert expected in row.group(1)
        assert not re.search(r"\b(address|customs_code|name|phone)\b", row.group(1))  # codes


async def test_http_source_is_in_the_report_and_its_values_are_escaped(
    demo_loaded: str, settings: Any
) -> None:
    data = demo_map_data()
    record = SourceRecord(
        resource="chats",
        key="C-1",
        matches={"customer": {"phone": DEMO_SUBJECT.phone_e164}},
        fields={"customer": {"nickname": "<script>alert(1)</script>", "phone": "+821055550001"}},
        handovers=[{"processor": "channel-corp", "at": FROZEN_AT.isoformat()}],
        retention_start=FROZEN_AT.isoformat(),
    )
    with ReferenceSource(TOKEN, [record]) as crm:
        data["sources"]["crm"] = {"connector": "http", "base_url": crm.url, "token": TOKEN}
        data["collections"].append(
            {
                "name": "chats",
                "label": {"ko": "채팅 상담", "en": "Chat counseling"},
                "source": "crm",
                "resource": "chats",
                "record_key": "id",
                "purposes": ["counseling"],
                "retention": {"rule": "complaints", "clock_column": "opened_at"},
                "roles": {
                    "customer": {
                        "match": [{"column": "phone", "identifier": "phone"}],
                        "fields": [
                            {
                                "column": "nickname",
                                "item": "name",
                                "label": {"ko": "닉네임", "en": "Nickname"},
                            },
                            {"column": "phone", "item": "phone"},
                        ],
                    }
                },
            }
        )
        report = await make_report(demo_loaded, settings, parse_datamap(data))
    items = held(report)
    assert items[("chats", "customer", "name")] == ["<script>alert(1)</script>"]
    assert {s.name: s.records for s in report.sources} == {"crm": 1, "demo": 13}
    assert "channel-corp" in {p.processor for p in report.third_parties}
    html = render_access_report_html(report, settings=settings)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert parse(html).scripts == 0


# --- storage ------------------------------------------------------------------------------


async def test_stored_sealed_then_expires_and_is_purged(
    demo_loaded: str, settings: Any, demo_map: DataMap, db: Database, clock: FrozenClock
) -> None:
    crypto = Crypto.from_settings(settings)
    report = await make_report(demo_loaded, settings, demo_map)
    owner = subject_blind_index(crypto, SUBJECT)
    async with db.transaction() as session:
        stored = await store_access_report(
            session, crypto=crypto, report=report, subject_blind_index=owner,
            now=clock.now(), ttl=timedelta(days=30),
        )  # fmt: skip
    assert stored.expires_at == clock.now() + timedelta(days=30)
    async with db.sessionmaker() as session:
        row = (await session.exec(select(AccessReportRecord))).one()
        assert row.content is not None
        assert DEMO_SUBJECT.name.encode() not in row.content
        assert DEMO_SUBJECT.customs_code.encode() not in row.content
        loaded = await load_access_report(
            session, crypto=crypto, request_id=report.request_id, subject=owner, now=clock.now()
        )
        assert loaded.items == report.items and loaded.expires_at == stored.expires_at
        staff = await load_access_report(
            session, crypto=crypto, request_id=report.request_id, subject=None, now=clock.now()
        )
        assert staff.request_id == report.request_id
        with pytest.raises(NotFound):
            await load_access_report(
                session, crypto=crypto, request_id=report.request_id,
                subject=crypto.blind_index("phone", "+821099990000"), now=clock.now(),
            )  # fmt: skip
        with pytest.raises(NotFound):
            await load_access_report(
                session, crypto=crypto, request_id=uuid.uuid4(), subject=owner, now=clock.now()
            )
    clock.advance(timedelta(days=30))
    async with db.sessionmaker() as session:
        with pytest.raises(Gone):
            await load_access_report(
                session, crypto=crypto, request_id=report.request_id, subject=owner, now=clock.now()
            )
    ctx = WorkerContext(
        settings=settings, db=db, crypto=crypto, clock=clock, http=httpx.AsyncClient()
    )
    assert await purge_access_reports(ctx) == 1
    assert await purge_access_reports(ctx) == 0
    await ctx.http.aclose()
    async with db.sessionmaker() as session:
        row = (await session.exec(select(AccessReportRecord))).one()
        assert row.content is None and row.purged_at == clock.now()
        with pytest.raises(Gone):
            await load_access_report(
                session, crypto=crypto, request_id=report.request_id, subject=None, now=clock.now()
            )


def test_purge_job_is_registered() -> None:
    registry = build_registry()
    assert "access_report.purge" in [job.name for job in registry.periodic]
    assert "job:fulfil.access" in registry.handlers


# --- the worker job -------------------------------------------------------------------------


@pytest.fixture
def completed() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def job_worker(worker: Worker, completed: list[dict[str, Any]]) -> Iterator[Worker]:
    async def on_ready(
        session: Any, *, request_id: uuid.UUID, report: AccessReport, now: Any
    ) -> None:
        count = (
            await session.execute(sa.select(sa.func.count()).select_from(AccessReportRecord))
        ).scalar()
        completed.append({"request_id": request_id, "report": report, "stored_rows": count})

    worker.ctx.access_report_ready = on_ready
    yield worker


async def queue_job(worker: Worker, request_id: uuid.UUID) -> None:
    crypto = worker.ctx.crypto
    async with worker.ctx.db.transaction() as session:
        await enqueue_access_fulfilment(
            session,
            crypto=crypto,
            now=worker.ctx.clock.now(),
            request_id=request_id,
            identifiers=SUBJECT,
            subject_blind_index=subject_blind_index(crypto, SUBJECT),
            withheld=[Withholding(ground="art35_4_2", item="device_serial")],
        )
        # Once per request: a second approval does not queue a second job.
        again = await enqueue_access_fulfilment(
            session,
            crypto=crypto,
            now=worker.ctx.clock.now(),
            request_id=request_id,
            identifiers=SUBJECT,
            subject_blind_index="x",
        )
        assert again is None


async def test_job_generates_stores_and_completes(
    demo_loaded: str, job_worker: Worker, demo_map: DataMap, completed: list[dict[str, Any]]
) -> None:
    job_worker.ctx.datamap = demo_map
    request_id = uuid.uuid4()
    await queue_job(job_worker, request_id)
    assert await job_worker.drain() == 1
    assert len(completed) == 1
    done = completed[0]
    assert done["request_id"] == request_id and done["stored_rows"] == 1  # same transaction
    assert done["report"].expires_at == FROZEN_AT + timedelta(days=30)
    async with job_worker.ctx.db.sessionmaker() as session:
        report = await load_access_report(
            session,
            crypto=job_worker.ctx.crypto,
            request_id=request_id,
            subject=subject_blind_index(job_worker.ctx.crypto, SUBJECT),
            now=FROZEN_AT,
        )
        message = (await session.exec(select(OutboxMessage))).one()
    assert message.status == "delivered"
    assert {w.item for w in report.withheld} == {"device_serial"}
    assert DEMO_SUBJECT.phone in json.dumps(report.model_dump(mode="json"), ensure_ascii=False)


async def test_a_source_that_is_down_makes_the_job_retry_with_no_report(
    demo_loaded: str, job_worker: Worker, completed: list[dict[str, Any]], clock: FrozenClock
) -> None:
    data = demo_map_data()
    data["sources"]["archive"] = {
        "connector": "postgres",
        "dsn": f"postgresql://postgres@127.0.0.1:{closed_port()}/archive",
    }
    archived = json.loads(json.dumps(data["collections"][3]))
    archived.update(name="archived_installs", source="archive")
    data["collections"].append(archived)
    job_worker.ctx.datamap = parse_datamap(data)
    request_id = uuid.uuid4()
    await queue_job(job_worker, request_id)
    assert await job_worker.run_once() == 1
    async with job_worker.ctx.db.sessionmaker() as session:
        message = (await session.exec(select(OutboxMessage))).one()
        reports = (await session.exec(select(AccessReportRecord))).all()
    assert message.status == "pending" and message.attempts == 1
    assert message.last_error is not None and "source archive unavailable" in message.last_error
    assert message.next_attempt_at > clock.now()
    assert reports == [] and completed == []
    # An http source that is down retries the same way.
    data["sources"]["archive"] = {
        "connector": "http",
        "base_url": f"http://127.0.0.1:{closed_port()}",
        "token": TOKEN,
    }
    archived.update(resource="installs")
    job_worker.ctx.datamap = parse_datamap(data)
    clock.advance(timedelta(hours=1))
    assert await job_worker.run_once() == 1
    async with job_worker.ctx.db.sessionmaker() as session:
        message = (await session.exec(select(OutboxMessage))).one()
        assert (await session.exec(select(AccessReportRecord))).all() == []
    assert message.status == "pending" and message.attempts == 2
    # Once the source is back (here: dropped from the map), the report is made.
    job_worker.ctx.datamap = parse_datamap(demo_map_data())
    clock.advance(timedelta(hours=1))
    assert await job_worker.run_once() == 1
    assert len(completed) == 1


async def test_generation_raises_rather_than_returning_a_partial_report(
    demo_loaded: str, settings: Any
) -> None:
    data = demo_map_data()
    data["sources"]["archive"] = {
        "connector": "postgres",
        "dsn": f"postgresql://postgres@127.0.0.1:{closed_port()}/archive",
    }
    archived = json.loads(json.dumps(data["collections"][0]))
    archived.update(name="archived_deliveries", source="archive")
    data["collections"].append(archived)
    with pytest.raises(SourceUnavailable):
        await make_report(demo_loaded, settings, parse_datamap(data))


async def test_malformed_job_payload_is_dead(job_worker: Worker) -> None:
    async with job_worker.ctx.db.transaction() as session:
        await queue.enqueue(
            session,
            crypto=job_worker.ctx.crypto,
            now=job_worker.ctx.clock.now(),
            kind="job",
            topic="fulfil.access",
            payload={"request_id": "not-a-uuid", "identifiers": {}},
        )
    await job_worker.drain()
    async with job_worker.ctx.db.sessionmaker() as session:
        message = (await session.exec(select(OutboxMessage))).one()
    assert message.status == "dead" and message.last_error == "fulfil.access payload is malformed"
