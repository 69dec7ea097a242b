"""The fixed vocabularies: purposes of processing and items of personal data (policy section 1).

One place for the names every part of the service uses: requests, the data map, the usage-check
API, corrections and retained records. Labels shown to data subjects live with the data map.
"""

from __future__ import annotations

from typing import Literal, get_args

Purpose = Literal[
    "delivery",
    "customs_clearance",
    "counseling",
    "app_service",
    "marketing",
    "service_logs",
]
PURPOSES: tuple[str, ...] = get_args(Purpose)

# Purposes a data subject consented to separately and may withdraw (PIPA Art. 37(1), 22).
OPTIONAL_PURPOSES: frozenset[str] = frozenset({"marketing"})

Item = Literal[
    "name",
    "company_name",
    "phone",
    "email",
    "address",
    "company_address",
    "customs_code",
    "device_serial",
    "ip_address",
    "access_time",
    "service_use",
    "inquiry",
]
ITEMS: tuple[str, ...] = get_args(Item)

RetentionRuleName = Literal[
    "transactions",
    "contracts",
    "complaints",
    "service_calls",
    "advertising",
    "access_logs_3m",
    "access_logs_12m",
]
RETENTION_RULE_NAMES: tuple[str, ...] = get_args(RetentionRuleName)


def is_purpose(value: str) -> bool:
    return value in PURPOSES


def is_item(value: str) -> bool:
    return value in ITEMS
