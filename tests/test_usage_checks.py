"""Restrictions while a correction is pending, suspensions, and POST /v1/usage-checks."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.clock import FrozenClock
from app.crypto import Crypto
from app.db import Database, driver_connection
from app.errors import InvalidInput
from app.models import ProcessingRestriction, ProcessingSuspension
from app.retention import restrictions
from app.retention.restrictions import RestrictedItem
from app.security import TokenService
from tests.conftest import FROZEN_AT

PHONE = "010-2345-6789"
PHONE_E164 = "+821023456789"
EMAIL = "Kim.Minji@Example.co.kr"
OTHER_PHONE = "010-9999-0000"


@pytest.fixture
def crypto(db: Database, app: Any) -> Crypto:
    return app.state.crypto  # type: ignore[no-any-return]


@pytest.fixture
def service_headers(staff_headers: Any) -> dict[str, str]:
    return staff_headers("service", sub="svc-marketing")  # type: ignore[no-any-return]


def phone_key(crypto: Crypto, phone: str = PHONE_E164) -> str:
    return crypto.blind_index("phone", phone)


def email_key(crypto: Crypto) -> str:
    return crypto.blind_index("email", EMAIL.lower())


async def restrict(
    db: Database, clock: FrozenClock, keys: list[str], items: list[Any], request_id: uuid.UUID
) -> int:
    async with db.transaction() as session:
        return await restrictions.restrict_items(
            session, subject_keys=keys, items=items, request_id=request_id, now=clock.now()
        )


async def suspend(
    db: Database,
    clock: FrozenClock,
    keys: list[str],
    purposes: list[str],
    request_id: uuid.UUID,
    *,
    consent_withdrawal: bool = False,
) -> int:
    async with db.transaction() as session:
        return await restrictions.suspend_purposes(
            session,
            subject_keys=keys,
            purposes=purposes,
            request_id=request_id,
            now=clock.now(),
            consent_withdrawal=consent_withdrawal,
        )


async def check(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post("/v1/usage-checks", json=body, headers=headers)


async def test_restriction_blocks_until_lifted(
    client: httpx.AsyncClient,
    db: Database,
    clock: FrozenClock,
    crypto: Crypto,
    service_headers: dict[str, str],
) -> None:
    request_id = uuid.uuid4()
    assert await restrict(db, clock, [phone_key(crypto)], ["address", "name"], request_id) == 2

    blocked = await check(
        client, service_headers, identifiers={"phone": PHONE}, purpose="delivery", items=["address"]
    )
    assert blocked.status_code == 200, blocked.text
    assert blocked.json() == {
        "allowed": False,
        "reasons": [
            {
                "code": "correction_pending",
                "request_id": str(request_id),
                "item": "address",
                "purpose": None,
            }
        ],
    }
    # Whatever the purpose: restricted data is "not used or provided" at all.
    anything = await check(
        client, service_headers, identifiers={"phone": PHONE}, purpose="counseling"
    )
    assert anything.json()["allowed"] is False
    assert {r["item"] for r in anything.json()["reasons"]} == {"address", "name"}
    # Items not under correction may still be used.
    other_items = await check(
        client, service_headers, identifiers={"phone": PHONE}, purpose="delivery", items=["phone"]
    )
    assert other_items.json() == {"allowed": True, "reasons": []}

    clock.advance(timedelta(minutes=10))
    async with db.transaction() as session:
        lifted = await restrictions.lift_restrictions(
            session, request_id=request_id, now=clock.now()
        )
    assert lifted == 2
    after = await check(
        client, service_headers, identifiers={"phone": PHONE}, purpose="delivery", items=["address"]
    )
    assert after.json() == {"allowed": True, "reasons": []}
    async with db.sessionmaker() as session:
        lifted_at = (
            (
                await session.execute(sa.select(ProcessingRestriction.lifted_at))  # type: ignore[call-overload]
            )
            .scalars()
            .all()
        )
    assert lifted_at == [clock.now(), clock.now()]


async def test_lifting_part_of_a_request_and_other_requests_stay(
    db: Database, clock: FrozenClock, crypto: Crypto
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    key = phone_key(crypto)
    await restrict(db, clock, [key], ["address", "name"], first)
    await restrict(db, clock, [key], ["address"], second)
    async with db.transaction() as session:
        assert (
            await restrictions.lift_restrictions(
                session, request_id=first, now=clock.now(), items=["address"]
            )
            == 1
        )
        decision = await restrictions.check_usage(
            await driver_connection(session),
            crypto=crypto,
            identifiers={"phone": PHONE},
            purpose="delivery",
            items=None,
        )
        active = await restrictions.active_restrictions(session, subject_keys=[key])
    assert not decision.allowed
    assert {(r.request_id, r.item) for r in decision.reasons} == {
        (first, "name"),
        (second, "address"),
    }
    assert {(r.request_id, r.item) for r in active} == {(first, "name"), (second, "address")}


async def test_restricting_twice_is_a_no_op_and_scopes_are_kept(
    db: Database, clock: FrozenClock, crypto: Crypto
) -> None:
    request_id = uuid.uuid4()
    key = phone_key(crypto)
    items = [RestrictedItem("address", role="recipient", record_ref="QX1001"), "name"]
    assert await restrict(db, clock, [key, key], items, request_id) == 2
    assert await restrict(db, clock, [key], items, request_id) == 0
    async with db.sessionmaker() as session:
        rows = await restrictions.active_restrictions(session, subject_keys=[key])
    assert sorted((r.item, r.role, r.record_ref) for r in rows) == [
        ("address", "recipient", "QX1001"),
        ("name", None, None),
    ]


async def test_suspension_blocks_only_the_named_purposes(
    client: httpx.AsyncClient,
    db: Database,
    clock: FrozenClock,
    crypto: Crypto,
    service_headers: dict[str, str],
) -> None:
    request_id = uuid.uuid4()
    assert (
        await suspend(db, clock, [phone_key(crypto)], ["marketing", "app_service"], request_id) == 2
    )
    for purpose in ("marketing", "app_service"):
        response = await check(
            client, service_headers, identifiers={"phone": PHONE}, purpose=purpose
        )
        assert response.json() == {
            "allowed": False,
            "reasons": [
                {
                    "code": "processing_suspended",
                    "request_id": str(request_id),
                    "item": None,
                    "purpose": purpose,
                }
            ],
        }
    for purpose in ("delivery", "customs_clearance", "counseling", "service_logs"):
        response = await check(
            client, service_headers, identifiers={"phone": PHONE}, purpose=purpose, items=["name"]
        )
        assert response.json()["allowed"] is True, purpose
    # Someone else is not affected.
    other = await check(
        client, service_headers, identifiers={"phone": OTHER_PHONE}, purpose="marketing"
    )
    assert other.json()["allowed"] is True

    async with db.transaction() as session:
        assert (
            await restrictions.lift_suspension(
                session, request_id=request_id, now=clock.now(), purposes=["app_service"]
            )
            == 1
        )
    app_service = await check(
        client, service_headers, identifiers={"phone": PHONE}, purpose="app_service"
    )
    marketing = await check(
        client, service_headers, identifiers={"phone": PHONE}, purpose="marketing"
    )
    assert app_service.json()["allowed"] is True
    assert marketing.json()["allowed"] is False


async def test_consent_withdrawal_is_recorded_as_such(
    db: Database, clock: FrozenClock, crypto: Crypto
) -> None:
    request_id = uuid.uuid4()
    await suspend(
        db, clock, [email_key(crypto)], ["marketing"], request_id, consent_withdrawal=True
    )
    async with db.sessionmaker() as session:
        rows = await restrictions.active_suspensions(session, subject_keys=[email_key(crypto)])
    assert [(r.purpose, r.consent_withdrawal, r.since) for r in rows] == [
        ("marketing", True, clock.now())
    ]


async def test_multiple_identifiers_match_either_key(
    client: httpx.AsyncClient,
    db: Database,
    clock: FrozenClock,
    crypto: Crypto,
    service_headers: dict[str, str],
) -> None:
    by_email, by_phone = uuid.uuid4(), uuid.uuid4()
    await restrict(db, clock, [email_key(crypto)], ["email"], by_email)
    await suspend(db, clock, [phone_key(crypto)], ["marketing"], by_phone)
    # The subject's request was filed under both keys: still one reason.
    both = uuid.uuid4()
    await restrict(db, clock, [email_key(crypto), phone_key(crypto)], ["address"], both)

    response = await check(
        client,
        service_headers,
        identifiers={"phone": "+82 10 2345 6789", "email": "kim.minji@EXAMPLE.co.kr"},
        purpose="marketing",
    )
    body = response.json()
    assert body["allowed"] is False
    assert sorted(
        (r["code"], r["request_id"], r["item"] or r["purpose"]) for r in body["reasons"]
    ) == sorted(
        [
            ("correction_pending", str(by_email), "email"),
            ("correction_pending", str(both), "address"),
            ("processing_suspended", str(by_phone), "marketing"),
        ]
    )
    only_phone = await check(
        client, service_headers, identifiers={"phone": "01023456789"}, purpose="delivery"
    )
    assert [(r["request_id"], r["item"]) for r in only_phone.json()["reasons"]] == [
        (str(both), "address")
    ]
    only_email = await check(
        client, service_headers, identifiers={"email": EMAIL}, purpose="delivery", items=["email"]
    )
    assert [r["request_id"] for r in only_email.json()["reasons"]] == [str(by_email)]


@pytest.mark.parametrize(
    "body",
    [
        {"identifiers": {}, "purpose": "delivery"},
        {"identifiers": {"phone": None, "email": None}, "purpose": "delivery"},
        {"purpose": "delivery"},
        {"identifiers": {"phone": PHONE}},
        {"identifiers": {"phone": PHONE}, "purpose": "surveillance"},
        {"identifiers": {"phone": PHONE}, "purpose": "delivery", "items": ["shoe_size"]},
        {"identifiers": {"phone": PHONE}, "purpose": "delivery", "items": []},
        {"identifiers": {"phone": PHONE, "ssn": "900101-1234567"}, "purpose": "delivery"},
        {"identifiers": {"phone": "010-12"}, "purpose": "delivery"},
        {"identifiers": {"email": "kim.minji-at-example"}, "purpose": "delivery"},
        {"identifiers": {"phone": "1" * 40}, "purpose": "delivery"},
        {"identifiers": {"phone": PHONE}, "purpose": "delivery", "extra": "x"},
    ],
)
async def test_bad_input_is_422_and_never_echoed(
    client: httpx.AsyncClient, service_headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = await check(client, service_headers, **body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation-failed"
    assert problem["errors"] and all("pointer" in error for error in problem["errors"])
    for secret in (
        "010-12",
        "2345-6789",
        "kim.minji",
        "900101",
        "1" * 40,
        "shoe_size",
        "surveillance",
    ):
        assert secret not in response.text


async def test_service_validates_for_direct_callers(db: Database, crypto: Crypto) -> None:
    async with db.sessionmaker() as session:
        with pytest.raises(InvalidInput):
            await restrictions.check_usage(
                await driver_connection(session), crypto=crypto, identifiers={}, purpose="delivery"
            )
        with pytest.raises(InvalidInput):
            await restrictions.check_usage(
                await driver_connection(session),
                crypto=crypto,
                identifiers={"phone": PHONE},
                purpose="nope",
            )
        with pytest.raises(InvalidInput):
            await restrictions.restrict_items(
                session, subject_keys=["k"], items=["nope"], request_id=uuid.uuid4(), now=FROZEN_AT
            )
        with pytest.raises(InvalidInput):
            await restrictions.suspend_purposes(
                session,
                subject_keys=["k"],
                purposes=["nope"],
                request_id=uuid.uuid4(),
                now=FROZEN_AT,
            )


@pytest.mark.parametrize(
    ("roles", "status"),
    [
        (None, 401),
        ("subject", 403),
        (("support_agent",), 403),
        (("privacy_officer",), 403),
        (("admin",), 403),
        (("service",), 200),
    ],
)
async def test_roles(
    client: httpx.AsyncClient,
    tokens: TokenService,
    clock: FrozenClock,
    staff_headers: Any,
    crypto: Crypto,
    roles: Any,
    status: int,
) -> None:
    if roles is None:
        headers: dict[str, str] = {}
    elif roles == "subject":
        token = tokens.issue_subject_token(
            blind_index=phone_key(crypto),
            identifier_kinds=["phone"],
            now=clock.now(),
            ttl=timedelta(minutes=30),
        )
        headers = {"Authorization": f"Bearer {token}"}
    else:
        headers = staff_headers(*roles)
    response = await check(client, headers, identifiers={"phone": PHONE}, purpose="delivery")
    assert response.status_code == status, response.text
    if status != 200:
        assert response.headers["content-type"] == "application/problem+json"
    else:
        assert response.json() == {"allowed": True, "reasons": []}


async def test_bad_or_expired_token_is_401(
    client: httpx.AsyncClient, tokens: TokenService, clock: FrozenClock
) -> None:
    token = tokens.issue_staff_token(
        sub="svc", roles=["service"], now=clock.now() - timedelta(hours=3), ttl=timedelta(hours=1)
    )
    expired = await check(
        client,
        {"Authorization": f"Bearer {token}"},
        identifiers={"phone": PHONE},
        purpose="delivery",
    )
    garbage = await check(
        client,
        {"Authorization": "Bearer not-a-token"},
        identifiers={"phone": PHONE},
        purpose="delivery",
    )
    assert expired.status_code == garbage.status_code == 401


async def test_checks_write_nothing_and_are_counted(
    client: httpx.AsyncClient,
    db: Database,
    clock: FrozenClock,
    crypto: Crypto,
    service_headers: dict[str, str],
) -> None:
    await suspend(db, clock, [phone_key(crypto)], ["marketing"], uuid.uuid4())

    async def counts() -> list[int]:
        tables = ("audit_entry", "outbox_message", "processing_suspension", "subject_identifier")
        async with db.sessionmaker() as session:
            return [
                (await session.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()
                for table in tables
            ]

    before = await counts()
    await check(client, service_headers, identifiers={"phone": PHONE}, purpose="marketing")
    await check(client, service_headers, identifiers={"phone": PHONE}, purpose="delivery")
    await check(client, service_headers, identifiers={"phone": PHONE}, purpose="delivery")
    assert await counts() == before
    metrics = (await client.get("/metrics")).text
    assert 'dsr_usage_checks_total{outcome="blocked"} 1.0' in metrics
    assert 'dsr_usage_checks_total{outcome="allowed"} 2.0' in metrics


async def test_suspensions_table_keeps_history(
    db: Database, clock: FrozenClock, crypto: Crypto
) -> None:
    request_id = uuid.uuid4()
    await suspend(db, clock, [phone_key(crypto)], ["marketing"], request_id)
    async with db.transaction() as session:
        await restrictions.lift_suspension(session, request_id=request_id, now=clock.now())
    # Suspending again under a new request is a new period, the old one stays in history.
    await suspend(db, clock, [phone_key(crypto)], ["marketing"], uuid.uuid4())
    async with db.sessionmaker() as session:
        total = (
            await session.execute(sa.select(sa.func.count()).select_from(ProcessingSuspension))
        ).scalar_one()
        active = await restrictions.active_suspensions(session, subject_keys=[phone_key(crypto)])
    assert total == 2 and len(active) == 1


async def test_the_check_keeps_its_prepared_generic_plan(
    db: Database, clock: FrozenClock, crypto: Crypto
) -> None:
    """PostgreSQL planned the keys-as-an-array form anew on every execution (a custom plan each
    time, a third of the round trip); the statement must settle on its generic plan."""
    await restrict(db, clock, [phone_key(crypto)], ["address"], uuid.uuid4())
    async with db.autocommit() as connection:
        # The choice follows the statistics: as many restrictions as a busy month leaves.
        await connection.copy_records_to_table(
            "processing_restriction",
            records=[
                (uuid.uuid4(), f"key-{n}", "address", uuid.uuid4(), clock.now())
                for n in range(5000)
            ],
            columns=["id", "subject_key", "item", "request_id", "created_at"],
        )
        await connection.execute("ANALYZE processing_restriction")
        for _ in range(12):  # PostgreSQL weighs a generic plan after five custom ones
            decision = await restrictions.check_usage(
                connection,
                crypto=crypto,
                identifiers={"phone": PHONE, "email": EMAIL},
                purpose="delivery",
                items=["address", "phone"],
            )
            assert not decision.allowed
        plans = await connection.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            restrictions._USAGE,
        )
    assert plans is not None
    assert plans["generic_plans"] >= 6, dict(plans)
