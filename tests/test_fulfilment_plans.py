"""The planning rules of correction, suspension and consent withdrawal, without any source."""

from __future__ import annotations

from typing import Any

import yaml

from app.datamap.connectors import Handover, SubjectRecord
from app.datamap.loader import parse_datamap
from app.datamap.schema import DataMap
from app.demo.load import demo_datamap_text
from app.fulfilment.correction import names_record, plan_record, processor_notices, stored_value
from app.fulfilment.suspension import erasure_of, plan_suspension

NEW_PHONE = "+821055550009"


def demo_map() -> DataMap:
    return parse_datamap(yaml.safe_load(demo_datamap_text()))


def record(collection: str, role: str, key: Any = 1, **extra: Any) -> SubjectRecord:
    return SubjectRecord(collection=collection, role=role, key=key, fields={}, **extra)


def test_identifier_columns_keep_their_format() -> None:
    datamap = demo_map()
    deliveries = datamap.collection("deliveries")
    sender = deliveries.roles["sender"].field("sender_phone")
    recipient = deliveries.roles["recipient"].field("recipient_phone")
    assert sender is not None and recipient is not None
    assert stored_value(deliveries, "sender", sender, NEW_PHONE) == "010-5555-0009"
    assert stored_value(deliveries, "recipient", recipient, NEW_PHONE) == "01055550009"
    address = deliveries.roles["sender"].field("sender_address")
    assert address is not None
    assert stored_value(deliveries, "sender", address, "새 주소 1") == "새 주소 1"
    # A foreign number cannot be written kr_dashed: E.164 rather than nothing.
    assert stored_value(deliveries, "sender", sender, "+14155550100") == "+14155550100"


def test_a_correction_touches_only_the_matched_role_and_the_named_record() -> None:
    deliveries = demo_map().collection("deliveries")
    mine = record(
        "deliveries", "recipient", 7, handovers=[Handover("hanjin", reference="HAN0000000007")]
    )
    corrections = [
        {"item": "phone", "new_value": NEW_PHONE},
        {"item": "address", "new_value": "새 주소 1", "record_ref": "HAN0000000009"},
    ]
    values, items = plan_record(deliveries, mine, corrections)
    assert values == {"recipient_phone": "01055550009"}
    assert items == {"phone": NEW_PHONE}
    assert names_record(mine, "HAN0000000007") and names_record(mine, "7")
    assert not names_record(mine, "HAN0000000009")


def test_each_processor_gets_only_the_items_it_received() -> None:
    affected = [
        {
            "items": {"phone": NEW_PHONE, "customs_code": "P202611260009"},
            "handovers": [
                {"processor": "sf-express", "reference": "IR1", "items": ["name", "phone"]},
                {"processor": "yuhan-technos", "reference": "IR1", "items": ["customs_code"]},
                {"processor": "hct", "reference": "HCT1", "items": None},
            ],
        },
        {
            "items": {"phone": NEW_PHONE},
            "handovers": [{"processor": "yuhan-technos", "reference": "IR2", "items": ["name"]}],
        },
    ]
    notices = {n["processor"]: n["data"] for n in processor_notices(affected)}
    assert notices == {
        "hct": {
            "records": [
                {
                    "reference": "HCT1",
                    "items": {"phone": NEW_PHONE, "customs_code": "P202611260009"},
                }
            ]
        },
        "sf-express": {"records": [{"reference": "IR1", "items": {"phone": NEW_PHONE}}]},
        "yuhan-technos": {
            "records": [{"reference": "IR1", "items": {"customs_code": "P202611260009"}}]
        },
    }


def test_only_data_held_solely_for_withdrawn_purposes_is_erased() -> None:
    datamap = demo_map()
    marketing = datamap.collection("marketing_contacts")
    intl = datamap.collection("intl_reservations")
    assert erasure_of(marketing, record("marketing_contacts", "subscriber"), {"marketing"}) == "all"
    assert erasure_of(intl, record("intl_reservations", "customer"), {"marketing"}) is None
    # A field narrowed to a withdrawn purpose goes alone (customs_code: customs_clearance).
    assert erasure_of(intl, record("intl_reservations", "customer"), {"customs_clearance"}) == [
        "customs_code"
    ]
    assert erasure_of(marketing, record("marketing_contacts", "subscriber"), set()) is None


def test_in_flight_blocks_contract_purposes_never_optional_ones() -> None:
    datamap = demo_map()
    deliveries = datamap.collection("deliveries")
    marketing = datamap.collection("marketing_contacts")
    records = [
        (deliveries, record("deliveries", "sender", 1, in_flight=True)),
        (marketing, record("marketing_contacts", "subscriber", 5, handovers=[Handover("lguplus")])),
    ]
    plan = plan_suspension(
        records,
        requested=["delivery", "marketing"],
        refused_at_decision=set(),
        withdrawal=True,
    )
    assert plan["refused_items"] == [{"item": "delivery", "ground": "pipa_37_2_4"}]
    assert plan["suspend"] == {"purposes": ["marketing"], "consent_withdrawal": True}
    assert [c["collection"] for c in plan["changes"]] == ["marketing_contacts"]
    assert plan["notices"][0]["data"] == {
        "records": [{"reference": "5", "purposes": ["marketing"]}]
    }
    # Refused at the decision: neither suspended nor refused again.
    decided = plan_suspension(
        records,
        requested=["delivery", "marketing"],
        refused_at_decision={"delivery"},
        withdrawal=False,
    )
    assert decided["refused_items"] == [] and decided["suspend"]["purposes"] == ["marketing"]
    assert decided["changes"] == []  # a suspension destroys nothing
