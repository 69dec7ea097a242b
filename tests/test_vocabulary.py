"""One vocabulary: the data map, the request API, deletion and the access report share
``app/vocabulary.py`` (items with their one category, categories, purposes, roles, grounds)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
import yaml

import app
from app import vocabulary
from app.datamap.loader import DataMapError, parse_datamap
from app.datamap.schema import DataMap
from app.demo.load import demo_datamap_text
from app.fulfilment.deletion import items_in_scope
from app.schemas.requests import RequestCreate
from tests.test_datamap import base_map

TABLES = ("ITEMS", "CATEGORIES", "PURPOSES", "ROLES", "GROUNDS", "WITHHOLDING_GROUNDS")


def test_no_module_defines_a_vocabulary_of_its_own() -> None:
    # A second table under one of these names (the data map once had its own) must be this one.
    for info in pkgutil.walk_packages(app.__path__, "app."):
        if info.name.endswith("__main__"):
            continue  # runs the command line
        module = importlib.import_module(info.name)
        for name in TABLES:
            if hasattr(module, name):
                assert getattr(module, name) is getattr(vocabulary, name), (info.name, name)


def _enum(schema: dict[str, Any], model: str, field: str) -> set[str]:
    spec = schema["$defs"][model]["properties"][field]
    for option in spec.get("anyOf", [spec]):
        found = option.get("enum") or option.get("items", {}).get("enum")
        if found:
            return set(found)
    raise AssertionError(f"{model}.{field} has no enum")


def test_the_data_map_accepts_exactly_the_vocabulary() -> None:
    schema = DataMap.model_json_schema()
    assert _enum(schema, "FieldSpec", "item") == set(vocabulary.ITEMS)
    assert _enum(schema, "FieldSpec", "category") == set(vocabulary.CATEGORIES)
    assert _enum(schema, "FieldSpec", "purposes") == set(vocabulary.PURPOSES)
    assert _enum(schema, "CollectionSpec", "purposes") == set(vocabulary.PURPOSES)
    assert _enum(schema, "ConsentSpec", "purpose") == set(vocabulary.PURPOSES)
    assert _enum(schema, "ProcessorSpec", "items") == set(vocabulary.ITEMS)
    assert _enum(schema, "Withhold", "ground") == set(vocabulary.WITHHOLDING_GROUNDS)


def test_the_request_api_accepts_exactly_the_vocabulary() -> None:
    schema = RequestCreate.model_json_schema()
    assert _enum(schema, "CorrectionIn", "item") == set(vocabulary.ITEMS)
    props = schema["properties"]
    for field, table in (
        ("items", vocabulary.ITEMS),
        ("categories", vocabulary.CATEGORIES),
        ("purposes", vocabulary.PURPOSES),
    ):
        enum = next(o["items"]["enum"] for o in props[field]["anyOf"] if "items" in o)
        assert set(enum) == set(table), field


FIELD = "collections[0].roles.sender.fields[0]"  # {column: s_name, item: name}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("item", "nickname", "Input should be"),
        ("category", "marketing", "Input should be"),  # a purpose, not a category
        ("category", "contact", "the vocabulary puts name in identity"),
        ("purposes", ["profiling"], "Input should be"),
    ],
)
def test_the_data_map_names_what_the_vocabulary_does_not_know(
    key: str, value: Any, message: str
) -> None:
    data = base_map()
    data["collections"][0]["roles"]["sender"]["fields"][0][key] = value
    with pytest.raises(DataMapError) as caught:
        parse_datamap(data)
    path = f"{FIELD}.{key}" + ("[0]" if isinstance(value, list) else "")
    assert caught.value.paths == [path]
    assert message in str(caught.value)


def test_a_category_that_agrees_with_the_vocabulary_is_accepted() -> None:
    data = base_map()
    data["collections"][0]["roles"]["sender"]["fields"][0]["category"] = "identity"
    parsed = parse_datamap(data)
    assert parsed.collections[0].roles["sender"].fields[0].effective_category == "identity"


def test_every_item_has_one_category_for_the_report_and_for_deletion() -> None:
    demo = parse_datamap(yaml.safe_load(demo_datamap_text()))
    fields = [f for c in demo.collections for r in c.roles.values() for f in r.fields]
    for category in vocabulary.CATEGORIES:
        in_report = {f.item for f in fields if f.effective_category == category}
        deleted = items_in_scope({"categories": [category]})
        assert deleted is not None and in_report <= deleted
        assert in_report == deleted & {f.item for f in fields}
    # company_name and customs_code, which the two old vocabularies put apart:
    assert vocabulary.ITEMS["company_name"].category == "identity"
    assert vocabulary.ITEMS["customs_code"].category == "customs"


def test_a_category_no_longer_known_deletes_nothing_rather_than_everything() -> None:
    assert items_in_scope({}) is None  # no narrowing: everything
    assert items_in_scope({"categories": ["marketing"]}) == set()


def test_codes_are_unambiguous_and_labelled_in_both_languages() -> None:
    codes = [*vocabulary.ITEMS, *vocabulary.CATEGORIES, *vocabulary.PURPOSES]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert vocabulary.item_label(code, "ko") != code
        assert vocabulary.item_label(code, "en") != code
    for ground in vocabulary.WITHHOLDING_TO_REFUSAL_GROUND.values():
        assert ground in vocabulary.GROUNDS
