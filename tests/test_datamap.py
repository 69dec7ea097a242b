"""The data map: parsing, validation errors named by path, identifier formats, retention rules."""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import ConfigError, Settings, default_retention_rules
from app.datamap.identifiers import SubjectIdentifiers, identifier_candidates
from app.datamap.loader import DataMapError, load_configured_datamap, load_datamap, parse_datamap
from app.datamap.schema import DataMap, default_rules, quote_ident
from app.demo.load import demo_datamap_text, write_demo_datamap
from app.main import create_app
from app.retention.rules import add_months


def base_map() -> dict[str, Any]:
    return {
        "version": 1,
        "sources": {
            "ops": {"connector": "postgres", "dsn": "self", "schema": "ops"},
            "crm": {"connector": "http", "base_url": "http://127.0.0.1:9/", "token": "t"},
        },
        "collections": [
            {
                "name": "deliveries",
                "label": {"ko": "배송", "en": "Deliveries"},
                "source": "ops",
                "table": "deliveries",
                "record_key": "id",
                "purposes": ["delivery"],
                "retention": {"rule": "contracts", "clock_column": "created_at"},
                "erasure": "redact",
                "processors": [{"column": "carrier", "items": ["name", "phone"]}],
                "roles": {
                    "sender": {
                        "match": [{"column": "s_phone", "identifier": "phone", "format": "e164"}],
                        "fields": [
                            {"column": "s_name", "item": "name"},
                            {"column": "s_phone", "item": "phone"},
                        ],
                    },
                    "recipient": {
                        "match": [{"column": "r_phone", "identifier": "phone"}],
                        "fields": [{"column": "r_name", "item": "name"}],
                    },
                },
            },
            {
                "name": "tickets",
                "label": {"ko": "상담", "en": "Tickets"},
                "source": "crm",
                "resource": "tickets",
                "record_key": "id",
                "purposes": ["counseling", "marketing"],
                "optional": True,
                "retention": {"rule": "until_purpose_achieved"},
                "erasure": "delete_row",
                "consent": {"column": "opt_in", "purpose": "marketing"},
                "roles": {
                    "customer": {
                        "match": [{"column": "email", "identifier": "email", "format": "ci"}],
                        "fields": [{"column": "email", "item": "email"}],
                    }
                },
            },
        ],
    }


def test_base_and_demo_maps_are_valid() -> None:
    parsed = parse_datamap(base_map())
    assert [c.name for c in parsed.collections] == ["deliveries", "tickets"]
    demo = parse_datamap(yaml.safe_load(demo_datamap_text()))
    assert {c.name for c in demo.collections} == {
        "deliveries",
        "intl_reservations",
        "email_counseling",
        "app_installs",
        "marketing_contacts",
        "access_logs",
    }
    assert demo.processor("hct") is not None and demo.processor("sf-express") is not None


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    parts: list[Any] = []
    for chunk in path.split("."):
        name, _, rest = chunk.partition("[")
        parts.append(name)
        for index in rest.rstrip("]").split("]["):
            if index:
                parts.append(int(index))
    target: Any = data
    for part in parts[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value


_DELETE = object()

FIELD = "collections[0].roles.sender.fields[1]"

MISTAKES = [
    # (what to change, new value, the path the error must name)
    (f"{FIELD}.item", "nmae", f"{FIELD}.item"),
    (f"{FIELD}.item", "Bad-Item", f"{FIELD}.item"),
    (f"{FIELD}.category", "secret", f"{FIELD}.category"),
    (f"{FIELD}.column", "", f"{FIELD}.column"),
    (f"{FIELD}.column", "x" * 64, f"{FIELD}.column"),
    (f"{FIELD}.column", "a\nb", f"{FIELD}.column"),
    (f"{FIELD}.column", "s_name", f"{FIELD}.column"),  # same column twice in a role
    (f"{FIELD}.column", "id", f"{FIELD}.column"),  # the record key
    (f"{FIELD}.erasure", "shred", f"{FIELD}.erasure"),
    (f"{FIELD}.colour", "red", f"{FIELD}.colour"),
    ("collections[0].purposes[0]", "profiling", "collections[0].purposes[0]"),
    ("collections[0].source", "nowhere", "collections[0].source"),
    ("collections[0].table", _DELETE, "collections[0].table"),
    ("collections[0].retention.rule", "forever", "collections[0].retention.rule"),
    ("collections[0].retention.clock_column", _DELETE, "collections[0].retention.clock_column"),
    ("collections[0].erasure", "delete_row", "collections[0].erasure"),
    ("collections[0].processors[0].items[1]", "iban", "collections[0].processors[0].items[1]"),
    (
        "collections[0].roles.sender.match[0].format",
        "kr_dotted",
        "collections[0].roles.sender.match[0].format[0]",
    ),
    (
        "collections[0].roles.sender.match[0].identifier",
        "ssn",
        "collections[0].roles.sender.match[0].identifier",
    ),
    ("collections[0].roles.recipient.match", [], "collections[0].roles.recipient.match"),
    ("collections[1].name", "deliveries", "collections[1].name"),
    ("collections[1].resource", _DELETE, "collections[1].resource"),
    ("collections[1].resource", "a/../b", "collections[1].resource"),
    ("collections[1].consent.purpose", "delivery", "collections[1].consent.purpose"),
    (
        "collections[1].roles.customer.match[0].format",
        "e164",
        "collections[1].roles.customer.match[0].format[0]",
    ),
    ("sources.crm.token", _DELETE, "sources.crm"),
    ("sources.crm.base_url", "ftp://x", "sources.crm.base_url"),
    ("sources.ops.connector", "mysql", "sources.ops.connector"),
    ("sources.ops.schema", 'a"' * 40, "sources.ops.schema"),
]


@pytest.mark.parametrize(("where", "value", "path"), MISTAKES)
def test_each_mistake_is_named_by_its_path(where: str, value: Any, path: str) -> None:
    data = copy.deepcopy(base_map())
    _set(data, where, value)
    with pytest.raises(DataMapError) as caught:
        parse_datamap(data, origin="datamap.yaml")
    assert path in caught.value.paths, caught.value.errors
    assert f"  {path}: " in str(caught.value)
    assert str(caught.value).startswith("data map datamap.yaml is invalid")


def test_several_mistakes_are_reported_together() -> None:
    data = base_map()
    data["collections"][0]["source"] = "nowhere"
    data["collections"][1]["retention"]["rule"] = "forever"
    with pytest.raises(DataMapError) as caught:
        parse_datamap(data)
    assert set(caught.value.paths) == {"collections[0].source", "collections[1].retention.rule"}


def test_identifiers_keep_quotes_and_are_quoted() -> None:
    data = base_map()
    data["collections"][0]["table"] = 'deliv"eries; DROP TABLE x; --'
    parsed = parse_datamap(data)
    assert parsed.collections[0].table == 'deliv"eries; DROP TABLE x; --'
    assert quote_ident('deliv"eries; DROP TABLE x; --') == '"deliv""eries; DROP TABLE x; --"'


def test_yaml_errors_and_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("collections: [\n  - name: x\n   bad indent")
    with pytest.raises(DataMapError) as caught:
        load_datamap(bad)
    assert caught.value.paths[0].startswith("line ")
    with pytest.raises(DataMapError):
        load_datamap(tmp_path / "missing.yaml")
    bad.write_text("- just\n- a list\n")
    with pytest.raises(DataMapError, match="must be a mapping"):
        load_datamap(bad)


def test_missing_map_is_empty_in_dev_and_fatal_in_prod(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "dsr.datamap")
    dev = Settings(env="dev", data_dir=tmp_path)
    assert load_configured_datamap(dev) == DataMap()
    assert any(r.__dict__.get("event") == "datamap.missing" for r in caplog.records)
    prod = Settings(env="prod", data_dir=tmp_path, datamap_path=tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_configured_datamap(prod)


def test_prod_refuses_literal_source_tokens(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(base_map()))
    with pytest.raises(DataMapError) as caught:
        load_configured_datamap(Settings(env="prod", datamap_path=path))
    assert caught.value.paths == ["sources.crm.token"]
    assert len(load_configured_datamap(Settings(env="dev", datamap_path=path)).collections) == 2


def test_invalid_map_stops_the_app(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    data = base_map()
    data["collections"][0]["roles"]["sender"]["fields"][1]["item"] = "nmae"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DataMapError, match=r"collections\[0\]\.roles\.sender\.fields\[1\]\.item"):
        create_app(settings.model_copy(update={"datamap_path": path}))


def test_demo_map_is_written_but_a_custom_map_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "datamap.yaml"
    assert write_demo_datamap(path)
    assert write_demo_datamap(path)  # ours: rewritten
    path.write_text("version: 1\n")
    assert not write_demo_datamap(path)
    assert path.read_text() == "version: 1\n"


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        (["e164"], ["+821055550001"]),
        (["kr_dashed"], ["010-5555-0001"]),
        (["digits"], ["01055550001"]),
        (["intl_digits"], ["821055550001"]),
        (["digits", "e164", "digits"], ["01055550001", "+821055550001"]),
        ([], ["+821055550001"]),
    ],
)
def test_phone_is_converted_to_each_column_format(formats: list[str], expected: list[str]) -> None:
    assert identifier_candidates("+821055550001", "phone", formats) == expected


def test_foreign_phone_has_no_korean_dashed_form() -> None:
    assert identifier_candidates("+81312345678", "phone", ["kr_dashed"]) == []
    assert identifier_candidates("+81312345678", "phone", ["digits"]) == ["0312345678"]


def test_subject_identifiers_are_canonical() -> None:
    SubjectIdentifiers(phone="+821055550001")
    for bad in ({"phone": "010-5555-0001"}, {"email": "Demo@Example.com"}, {}):
        with pytest.raises(ValueError):
            SubjectIdentifiers(**bad)


def test_policy_retention_rules() -> None:
    rules = default_rules()
    expected = {
        "transactions": (60, "Framework Act on National Taxes"),
        "contracts": (60, "Electronic Commerce"),
        "complaints": (36, "Electronic Commerce"),
        "service_calls": (3, "Communications Secrets"),
        "advertising": (6, "Electronic Commerce"),
        "access_logs_3m": (3, "Communications Secrets"),
        "access_logs_12m": (12, "Communications Secrets"),
    }
    for name, (months, law) in expected.items():
        assert rules[name].months == months
        assert law in rules[name].legal_basis.en
    assert set(expected) == set(default_retention_rules())
    assert rules["until_purpose_achieved"].retain_until(datetime(2026, 1, 1, tzinfo=UTC)) is None
    start = datetime(2024, 1, 31, 9, tzinfo=UTC)
    assert rules["access_logs_3m"].retain_until(start) == datetime(2024, 4, 30, 9, tzinfo=UTC)
    assert add_months(start, 1) == datetime(2024, 2, 29, 9, tzinfo=UTC)
    assert rules["contracts"].period_label("ko") == "5년"
    assert rules["access_logs_3m"].period_label("en") == "3 months"


def test_rules_come_from_the_settings(tmp_path: Path) -> None:
    overrides = {
        "contracts": {"period": "7y", "legal_basis_ko": "사내 규정", "legal_basis_en": "Policy"},
        "chat_logs": {"period": "1y", "legal_basis_ko": "근거", "legal_basis_en": "Basis"},
    }
    settings = Settings(retention_rules=overrides)
    data = base_map()
    data["collections"][0]["retention"]["rule"] = "chat_logs"
    parsed = parse_datamap(data, rules=settings.retention_rules)
    assert parsed.rule("contracts").months == 84
    assert parsed.rule("chat_logs").months == 12
    assert parsed.rule("chat_logs").legal_basis.en == "Basis"
    # Without the setting the rule is unknown: the error names the collection's path.
    with pytest.raises(DataMapError) as caught:
        parse_datamap(data)
    assert caught.value.paths == ["collections[0].retention.rule"]
    assert "configured: " in str(caught.value)
    # Through the configured loader too (start-up): the path is named in the message.
    path = tmp_path / "datamap.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(DataMapError) as loaded:
        load_configured_datamap(Settings(env="dev", datamap_path=path))
    assert "collections[0].retention.rule" in str(loaded.value)
    configured = settings.model_copy(update={"datamap_path": path})
    assert load_configured_datamap(configured).rule("chat_logs").months == 12


def test_the_map_cannot_define_its_own_rules() -> None:
    data = base_map()
    data["retention_rules"] = {
        "contracts": {"period": "7y", "legal_basis": {"ko": "사내 규정", "en": "Policy"}}
    }
    with pytest.raises(DataMapError) as caught:
        parse_datamap(data)
    assert caught.value.paths == ["retention_rules"]


def test_every_demo_rule_is_a_setting() -> None:
    demo = parse_datamap(yaml.safe_load(demo_datamap_text()))
    for spec in demo.collections:
        assert spec.retention.rule in (*default_retention_rules(), "until_purpose_achieved")
