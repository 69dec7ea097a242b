"""Fixed vocabularies of requests: types, items, categories, purposes, refusal grounds.

Item, category and purpose codes follow section 1 of the privacy policy; the data map
(``datamap.yaml``), the usage-check API, corrections and retained records use the same codes.
Refusal grounds map each code to its legal source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from app.config import REQUEST_TYPES

RequestType = Literal["access", "correction", "deletion", "suspension", "consent_withdrawal"]
Locale = Literal["ko", "en"]

TYPE_LABELS: dict[str, dict[str, str]] = {
    "access": {"ko": "열람", "en": "access"},
    "correction": {"ko": "정정", "en": "correction"},
    "deletion": {"ko": "삭제", "en": "deletion"},
    "suspension": {"ko": "처리정지", "en": "suspension of processing"},
    "consent_withdrawal": {"ko": "동의 철회", "en": "withdrawal of consent"},
}
assert set(TYPE_LABELS) == set(REQUEST_TYPES)


@dataclass(frozen=True)
class Item:
    code: str
    category: str
    correctable: bool
    ko: str
    en: str


ITEMS: dict[str, Item] = {
    item.code: item
    for item in (
        Item("name", "identity", True, "이름", "name"),
        Item("phone", "contact", True, "전화번호", "phone number"),
        Item("address", "contact", True, "주소", "address"),
        Item("email", "contact", True, "이메일", "e-mail address"),
        Item("customs_code", "customs", True, "개인통관고유부호", "personal customs code"),
        Item("company_name", "marketing", True, "회사명", "company name"),
        Item("company_address", "marketing", True, "회사 주소", "company address"),
        Item("device_serial", "device", False, "기기 일련번호", "device serial number"),
        Item("inquiry", "counseling", False, "상담 내용", "inquiry"),
        Item("ip_address", "logs", False, "접속 IP 주소", "IP address"),
        Item("access_time", "logs", False, "접속 일시", "access time"),
        Item("service_use", "logs", False, "서비스 이용기록", "service use records"),
    )
}

CATEGORIES: dict[str, dict[str, str]] = {
    "identity": {"ko": "신원 정보", "en": "identity"},
    "contact": {"ko": "연락처 정보", "en": "contact details"},
    "customs": {"ko": "통관 정보", "en": "customs clearance"},
    "marketing": {"ko": "마케팅·이벤트 정보", "en": "marketing and events"},
    "device": {"ko": "기기 정보", "en": "device"},
    "counseling": {"ko": "상담 기록", "en": "counseling records"},
    "logs": {"ko": "접속·이용 기록", "en": "access and use logs"},
}

PURPOSES: dict[str, dict[str, str]] = {
    "delivery": {"ko": "배송 서비스 제공", "en": "delivery service"},
    "customs_clearance": {"ko": "통관", "en": "customs clearance"},
    "counseling": {"ko": "고객 상담", "en": "customer counseling"},
    "app_service": {"ko": "모바일 앱 서비스", "en": "mobile app service"},
    "marketing": {"ko": "마케팅·이벤트", "en": "marketing and events"},
    "service_logs": {"ko": "서비스 이용기록 관리", "en": "service logs"},
}

# The same codes as types, for request and response bodies.
ItemCode = Literal[
    "name",
    "phone",
    "address",
    "email",
    "customs_code",
    "company_name",
    "company_address",
    "device_serial",
    "inquiry",
    "ip_address",
    "access_time",
    "service_use",
]
PurposeCode = Literal[
    "delivery", "customs_clearance", "counseling", "app_service", "marketing", "service_logs"
]
assert set(get_args(ItemCode)) == set(ITEMS)
assert set(get_args(PurposeCode)) == set(PURPOSES)

# Purposes a data subject consented to separately and may withdraw (PIPA Art. 37(1), 22).
OPTIONAL_PURPOSES: frozenset[str] = frozenset({"marketing"})

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


@dataclass(frozen=True)
class Ground:
    """A lawful reason to refuse all or part of a request."""

    code: str
    applies_to: tuple[str, ...]
    source_ko: str
    source_en: str
    ko: str
    en: str

    def label(self, locale: str) -> str:
        return self.ko if locale == "ko" else self.en

    def source(self, locale: str) -> str:
        return self.source_ko if locale == "ko" else self.source_en


_ACCESS_CORRECTION = ("access", "correction")
_SUSPENSION = ("suspension", "consent_withdrawal")

# PIPA Art. 35(4) 3 and Art. 37(2) 3 concern public institutions only; QXPRESS is not one.
GROUNDS: dict[str, Ground] = {
    ground.code: ground
    for ground in (
        Ground(
            "pipa_35_4_1",
            ("access",),
            "개인정보 보호법 제35조제4항제1호",
            "PIPA Art. 35(4) item 1",
            "법률에 따라 열람이 금지되거나 제한되는 경우",
            "access is prohibited or restricted by law",
        ),
        Ground(
            "pipa_35_4_2",
            ("access",),
            "개인정보 보호법 제35조제4항제2호",
            "PIPA Art. 35(4) item 2",
            "다른 사람의 생명·신체를 해할 우려가 있거나 다른 사람의 재산과 그 밖의 이익을 "
            "부당하게 침해할 우려가 있는 경우",
            "access may harm another person's life or body, or unjustly infringe another "
            "person's property or other interests",
        ),
        Ground(
            "pipa_36_1_proviso",
            ("deletion",),
            "개인정보 보호법 제36조제1항 단서",
            "PIPA Art. 36(1) proviso",
            "다른 법령에서 그 개인정보가 수집 대상으로 명시되어 있는 경우",
            "another law names this personal information as required to be collected (kept)",
        ),
        Ground(
            "pipa_37_2_1",
            _SUSPENSION,
            "개인정보 보호법 제37조제2항제1호",
            "PIPA Art. 37(2) item 1",
            "법률에 특별한 규정이 있거나 법령상 의무를 준수하기 위하여 불가피한 경우",
            "a law specifically provides for it, or it is unavoidable to meet a legal obligation",
        ),
        Ground(
            "pipa_37_2_2",
            _SUSPENSION,
            "개인정보 보호법 제37조제2항제2호",
            "PIPA Art. 37(2) item 2",
            "다른 사람의 생명·신체를 해할 우려가 있거나 다른 사람의 재산과 그 밖의 이익을 "
            "부당하게 침해할 우려가 있는 경우",
            "it may harm another person's life or body, or unjustly infringe another "
            "person's property or other interests",
        ),
        Ground(
            "pipa_37_2_4",
            _SUSPENSION,
            "개인정보 보호법 제37조제2항제4호",
            "PIPA Art. 37(2) item 4",
            "개인정보를 처리하지 아니하면 약정한 서비스를 제공하지 못하는 등 계약의 이행이 "
            "곤란하고, 정보주체가 그 계약의 해지 의사를 명확하게 밝히지 아니한 경우",
            "without processing the contracted service (e.g. a delivery under way) cannot be "
            "performed, and the data subject has not clearly terminated the contract",
        ),
        Ground(
            "identity_not_verified",
            REQUEST_TYPES,
            "개인정보 보호법 시행령 제46조제1항, 개인정보 처리방침 제6조",
            "PIPA Enforcement Decree Art. 46(1); privacy policy section 6",
            "요구한 사람이 정보주체 본인 또는 정당한 대리인임이 확인되지 않은 경우",
            "the requester could not be verified as the data subject or a lawful representative",
        ),
        Ground(
            "policy_6_1",
            _ACCESS_CORRECTION,
            "개인정보 처리방침 제6조 ① (개인정보 보호법 제35조제4항제2호 참조)",
            "Privacy policy section 6 ① (cf. PIPA Art. 35(4) item 2)",
            "본인 또는 제3자의 생명, 신체, 재산 또는 권익을 현저히 해할 우려가 있는 경우",
            "it may significantly harm the life, body, property or rights of the person or a "
            "third party",
        ),
        Ground(
            "policy_6_2",
            _ACCESS_CORRECTION,
            "개인정보 처리방침 제6조 ②",
            "Privacy policy section 6 ②",
            "해당 서비스 제공자의 업무에 현저한 지장을 미칠 우려가 있는 경우",
            "it may significantly disrupt the business of the service provider",
        ),
        Ground(
            "policy_6_3",
            _ACCESS_CORRECTION,
            "개인정보 처리방침 제6조 ③ (개인정보 보호법 제35조제4항제1호 참조)",
            "Privacy policy section 6 ③ (cf. PIPA Art. 35(4) item 1)",
            "법령 등에 위반되는 경우",
            "it would be against the law",
        ),
    )
}


def item_label(code: str, locale: str) -> str:
    """A readable name for an item, category or purpose code (the code itself if unknown)."""
    lang = "ko" if locale == "ko" else "en"
    if code in ITEMS:
        item = ITEMS[code]
        return item.ko if lang == "ko" else item.en
    for table in (PURPOSES, CATEGORIES):
        if code in table:
            return table[code][lang]
    return code
