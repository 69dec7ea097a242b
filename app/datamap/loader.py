"""Loading the data map from YAML and validating it against the vocabulary."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.config import ConfigError, Settings, default_retention_rules
from app.datamap.schema import (
    NAME_PATTERN,
    CollectionSpec,
    DataMap,
    HttpSource,
    OriginSpec,
    PostgresSource,
    RoleSpec,
)
from app.retention.rules import datamap_rules
from app.vocabulary import CATEGORIES, ITEMS

logger = logging.getLogger("dsr.datamap")


# --- Loading and validation ------------------------------------------------------------------


class DataMapError(ConfigError):
    """The data map is not usable; each error names its path in the file."""

    def __init__(self, origin: str, errors: list[tuple[str, str]]) -> None:
        self.origin = origin
        self.errors = errors
        lines = "\n".join(f"  {path or '(top)'}: {message}" for path, message in errors)
        super().__init__(f"data map {origin} is invalid:\n{lines}")

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.errors]


def format_path(loc: Iterable[Any]) -> str:
    """('collections', 2, 'roles', 'sender') → 'collections[2].roles.sender'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = list(error["loc"])
        # The tagged union of sources puts the tag in the location: sources.x.http.base_url.
        if len(loc) > 2 and loc[0] == "sources" and loc[2] in ("postgres", "http"):
            del loc[2]
        errors.append((format_path(loc), str(error["msg"])))
    return errors


def parse_datamap(
    data: Any, *, origin: str = "<data>", rules: Mapping[str, Any] | None = None
) -> DataMap:
    """Validate a parsed YAML document against the settings' retention ``rules``
    (``Settings.retention_rules``; default: the built-in policy table); raise DataMapError
    naming every bad path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataMapError(origin, [("", "the data map must be a mapping")])
    if "retention_rules" in data:
        raise DataMapError(
            origin,
            [("retention_rules", "retention rules are settings (DSR_RETENTION_RULES), not map")],
        )
    data = {
        **data,
        "retention_rules": datamap_rules(default_retention_rules() if rules is None else rules),
    }
    # A discriminated union on `connector` gives clean per-source messages.
    sources = data.get("sources") or {}
    problems: list[tuple[str, str]] = []
    if isinstance(sources, dict):
        for name, source in sources.items():
            if not re.match(NAME_PATTERN, str(name)):
                problems.append((f"sources.{name}", "source names are lower_snake_case"))
            if not isinstance(source, dict) or source.get("connector") not in ("postgres", "http"):
                problems.append((f"sources.{name}.connector", "must be 'postgres' or 'http'"))
    if problems:
        raise DataMapError(origin, problems)
    try:
        datamap = DataMap.model_validate(data)
    except ValidationError as exc:
        raise DataMapError(origin, _pydantic_errors(exc)) from None
    problems = list(_check_references(datamap))
    if problems:
        raise DataMapError(origin, problems)
    return datamap


def _check_references(datamap: DataMap) -> Iterable[tuple[str, str]]:
    """Cross-references the schema alone cannot check."""
    rules = datamap.rules
    for name, source in datamap.sources.items():
        if isinstance(source, PostgresSource) and bool(source.dsn) == bool(source.dsn_env):
            yield f"sources.{name}", "give exactly one of dsn or dsn_env"
        if isinstance(source, HttpSource) and bool(source.token) == bool(source.token_env):
            yield f"sources.{name}", "give exactly one of token or token_env"
    codes = [info.code for info in datamap.processors]
    for index, code in enumerate(codes):
        if codes.index(code) != index:
            yield f"processors[{index}].code", "duplicate processor code"
    controllers = [info.code for info in datamap.controllers]
    for index, code in enumerate(controllers):
        if controllers.index(code) != index:
            yield f"controllers[{index}].code", "duplicate controller code"
    seen: set[str] = set()
    for index, spec in enumerate(datamap.collections):
        at = f"collections[{index}]"
        if spec.name in seen:
            yield f"{at}.name", "duplicate collection name"
        seen.add(spec.name)
        found = datamap.sources.get(spec.source)
        if found is None:
            yield f"{at}.source", "no such source in sources"
        elif isinstance(found, PostgresSource) and not spec.table:
            yield f"{at}.table", "a postgres collection needs a table"
        elif isinstance(found, HttpSource) and not spec.resource:
            yield f"{at}.resource", "an http collection needs a resource"
        if spec.retention.rule not in rules:
            yield (
                f"{at}.retention.rule",
                f"no such retention rule (configured: {', '.join(sorted(rules))})",
            )
        elif rules[spec.retention.rule].months is not None and not spec.retention.clock_column:
            yield f"{at}.retention.clock_column", "a rule with a period needs a clock column"
        if spec.erasure == "delete_row" and len(spec.roles) > 1:
            yield (
                f"{at}.erasure",
                "delete_row would erase the other roles' data: use null, redact or hash",
            )
        if spec.consent and spec.consent.purpose not in spec.purposes:
            yield f"{at}.consent.purpose", "not one of the collection's purposes"
        role_items = {item for role in spec.roles.values() for item in _items(role)}
        for p_index, processor in enumerate(spec.processors):
            for i_index, item in enumerate(processor.items or []):
                if item not in role_items:
                    yield f"{at}.processors[{p_index}].items[{i_index}]", "no field has this item"
        if spec.origin is not None:
            yield from _check_origin(f"{at}.origin", spec.origin, set(controllers))
        for role_name, role in spec.roles.items():
            yield from _check_role(f"{at}.roles.{role_name}", role_name, role, spec)
            if role.origin is not None:
                yield from _check_origin(
                    f"{at}.roles.{role_name}.origin", role.origin, set(controllers)
                )


def _check_origin(at: str, origin: OriginSpec, controllers: set[str]) -> Iterable[tuple[str, str]]:
    if origin.from_ == "controller" and not origin.controller:
        yield f"{at}.controller", "from: controller names the controller (a controllers code)"
    if origin.controller and origin.controller not in controllers:
        yield f"{at}.controller", "not listed under controllers"
    if origin.controller and origin.from_ != "controller":
        yield (
            f"{at}.controller",
            "only with from: controller (controller_column names it per record)",
        )
    if origin.reference_column and not (origin.controller or origin.controller_column):
        yield f"{at}.reference_column", "a controller's reference needs a controller"


def _items(role: RoleSpec) -> list[str]:
    return [spec.item for spec in role.fields]


def _check_role(
    at: str, name: str, role: RoleSpec, spec: CollectionSpec
) -> Iterable[tuple[str, str]]:
    if not re.match(NAME_PATTERN, name):
        yield at, "role names are lower_snake_case"
    for index, match in enumerate(role.match):
        allowed: tuple[str, ...] = ("e164", "kr_dashed", "digits", "intl_digits")
        if match.identifier == "email":
            allowed = ("lower", "ci")
        formats = match.format or [allowed[0]]
        for f_index, value in enumerate(formats):
            if value not in allowed:
                yield (
                    f"{at}.match[{index}].format[{f_index}]",
                    f"not a format for {match.identifier} (one of {', '.join(allowed)})",
                )
    columns: set[str] = set()
    for index, field in enumerate(role.fields):
        if field.column in columns:
            yield f"{at}.fields[{index}].column", "the same column twice in one role"
        columns.add(field.column)
        category = ITEMS[field.item].category
        if field.category is not None and field.category != category:
            # One item, one category: deletion by category and the report must agree.
            yield (
                f"{at}.fields[{index}].category",
                f"the vocabulary puts {field.item} in {category} "
                f"({CATEGORIES[category].en}): leave category out",
            )
        if field.column == spec.record_key:
            yield f"{at}.fields[{index}].column", "the record key cannot be a personal field"


def load_datamap(path: Path, *, rules: Mapping[str, Any] | None = None) -> DataMap:
    """Read and validate a data map file (``rules``: ``Settings.retention_rules``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataMapError(str(path), [("", f"cannot be read ({type(exc).__name__})")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise DataMapError(str(path), [(where, "is not valid YAML")]) from None
    return parse_datamap(data, origin=str(path), rules=rules)


def datamap_path(settings: Settings) -> Path:
    """DSR_DATAMAP_PATH, else the map `dsr demo` writes into the data dir."""
    return settings.datamap_path or settings.data_dir / "datamap.yaml"


def load_configured_datamap(settings: Settings) -> DataMap:
    """The map for this process: a missing map is empty in dev/test (with a warning); in prod a
    missing or invalid map stops start-up, and an invalid map always does."""
    path = datamap_path(settings)
    if not path.exists():
        if settings.env == "prod":
            raise ConfigError(f"data map {path} does not exist (DSR_DATAMAP_PATH)")
        logger.warning(
            "no data map: access reports will find nothing until one is configured",
            extra={"event": "datamap.missing"},
        )
        return DataMap()
    datamap = load_datamap(path, rules=settings.retention_rules)
    if settings.env == "prod":
        for name, source in datamap.sources.items():
            if isinstance(source, HttpSource) and source.token:
                raise DataMapError(
                    str(path), [(f"sources.{name}.token", "use token_env in production")]
                )
    logger.info(
        "data map loaded",
        extra={"event": "datamap.loaded", "count": len(datamap.collections)},
    )
    return datamap
