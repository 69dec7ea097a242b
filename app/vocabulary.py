"""The one vocabulary: request types, items and their categories, purposes, roles, grounds.

Item, category and purpose codes follow section 1 of the privacy policy; the data map
(``datamap.yaml``, validated against these tables), the request API, the access report,
deletion, corrections, the usage-check API and retained records use the same codes and labels.
Refusal grounds and the withholding grounds of access reports map each code to its legal source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

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


class Text(BaseModel):
    """A label in Korean and English (texts reaching a data subject come in both)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ko: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.ko


@dataclass(frozen=True)
class Item:
    """An item of personal information and the one category it belongs to."""

    code: str
    category: str
    correctable: bool
    ko: str
    en: str

    @property
    def label(self) -> Text:
        return Text(ko=self.ko, en=self.en)


# Categories say what kind of information an item is, as a data subject would group it; the
# privacy policy's section 1 lists the same items under its purposes (delivery, counseling, app,
# marketing), which are the PURPOSES below, not categories. The data map, deletion by category
# and the access report all take an item's category from here.
CATEGORIES: dict[str, Text] = {
    "identity": Text(ko="신원 정보", en="Identity"),
    "contact": Text(ko="연락처 정보", en="Contact details"),
    "customs": Text(ko="통관 정보", en="Customs clearance information"),
    "device": Text(ko="기기 정보", en="Device information"),
    "counseling_records": Text(ko="상담·문의 내용", en="Counseling and inquiries"),
    "logs": Text(ko="접속·이용 기록", en="Access and service use records"),
}

ITEMS: dict[str, Item] = {
    item.code: item
    for item in (
        Item("name", "identity", True, "이름", "Name"),
        Item("company_name", "identity", True, "회사명", "Company name"),
        Item("phone", "contact", True, "전화번호", "Phone number"),
        Item("email", "contact", True, "이메일", "E-mail address"),
        Item("address", "contact", True, "주소", "Address"),
        Item("company_address", "contact", True, "회사 주소", "Company address"),
        Item(
            "customs_code", "customs", True, "개인통관고유부호", "Personal customs clearance code"
        ),
        Item("device_serial", "device", False, "기기 일련번호", "Device serial number"),
        Item("inquiry", "counseling_records", False, "문의 내용", "Inquiry"),
        Item("ip_address", "logs", False, "접속 IP 주소", "IP address"),
        Item("access_time", "logs", False, "접속 일시", "Date and time of access"),
        Item("service_use", "logs", False, "서비스 이용 기록", "Record of service use"),
    )
}
assert {item.category for item in ITEMS.values()} == set(CATEGORIES)

# The purposes of privacy policy section 1 (and the access logs of its item 5).
PURPOSES: dict[str, Text] = {
    "delivery": Text(
        ko="택배 서비스 제공(계약 체결·이행, 배송, 요금 정산, 사고 처리 및 보상)",
        en="Delivery service (contract, delivery of goods, payment, accident handling)",
    ),
    "customs_clearance": Text(ko="수출입 통관", en="Customs clearance for import and export"),
    "counseling": Text(
        ko="고객 상담(본인 확인, 사실 확인을 위한 연락, 처리 결과 안내)",
        en="Customer counseling (identification, contact, result of handling)",
    ),
    "app_service": Text(
        ko="모바일 앱 서비스(고객 식별, 배송 조회·예약, 푸시 알림)",
        en="Mobile app service (identification, tracking and reservation, push messages)",
    ),
    "marketing": Text(
        ko="마케팅 및 이벤트 안내(선택 동의)", en="Marketing and events (optional consent)"
    ),
    "service_logs": Text(
        ko="서비스 이용 기록 보관(통신사실확인자료)", en="Service use records (access logs)"
    ),
}

# One code names one thing: a refusal entry's code may be an item, a category or a purpose.
assert not (set(ITEMS) & set(CATEGORIES) or set(ITEMS) & set(PURPOSES))
assert not set(CATEGORIES) & set(PURPOSES)

# The roles a person has in a record (the data map may label others itself).
ROLES: dict[str, Text] = {
    "sender": Text(ko="보내는 분", en="Sender"),
    "recipient": Text(ko="받는 분", en="Recipient"),
    "customer": Text(ko="고객", en="Customer"),
    "user": Text(ko="앱 이용자", en="App user"),
    "subscriber": Text(ko="수신 동의자", en="Subscriber"),
    "account": Text(ko="계정 이용자", en="Account holder"),
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
CategoryCode = Literal["identity", "contact", "customs", "device", "counseling_records", "logs"]
PurposeCode = Literal[
    "delivery", "customs_clearance", "counseling", "app_service", "marketing", "service_logs"
]
assert set(get_args(ItemCode)) == set(ITEMS)
assert set(get_args(CategoryCode)) == set(CATEGORIES)
assert set(get_args(PurposeCode)) == set(PURPOSES)

# Purposes a data subject consented to separately and may withdraw (PIPA Art. 37(1), 22).
OPTIONAL_PURPOSES: frozenset[str] = frozenset({"marketing"})


def is_purpose(value: str) -> bool:
    return value in PURPOSES


def is_item(value: str) -> bool:
    return value in ITEMS


def items_in(categories: Iterable[str]) -> set[str]:
    """The items of these categories (the one item→category mapping)."""
    wanted = set(categories)
    return {code for code, item in ITEMS.items() if item.category in wanted}


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


# Grounds for withholding an item from an access report (PIPA Art. 35(4)); a data map's
# ``withhold`` and a reviewer's withholding name one. Each maps to the refusal ground above that
# the partial refusal of the request records.
WithholdingGround = Literal["art35_4_1", "art35_4_2", "art35_4_3"]
WITHHOLDING_GROUNDS: dict[str, Text] = {
    "art35_4_1": Text(
        ko="법률에 따라 열람이 금지되거나 제한되는 경우(개인정보 보호법 제35조제4항제1호)",
        en="Access is prohibited or restricted by law (PIPA Art. 35(4)1)",
    ),
    "art35_4_2": Text(
        ko="다른 사람의 생명·신체를 해할 우려가 있거나 다른 사람의 재산과 그 밖의 이익을 부당하게 "
        "침해할 우려가 있는 경우(개인정보 보호법 제35조제4항제2호)",
        en="Access may harm another person's life or body or unfairly infringe their property "
        "or other interests (PIPA Art. 35(4)2)",
    ),
    "art35_4_3": Text(
        ko="공공기관의 업무 수행에 중대한 지장을 초래하는 경우(개인정보 보호법 제35조제4항제3호)",
        en="Access would seriously disrupt a public institution's duties (PIPA Art. 35(4)3)",
    ),
}
assert set(get_args(WithholdingGround)) == set(WITHHOLDING_GROUNDS)
WITHHOLDING_TO_REFUSAL_GROUND: dict[str, str] = {
    "art35_4_1": "pipa_35_4_1",
    "art35_4_2": "pipa_35_4_2",
}


def item_label(code: str, locale: str) -> str:
    """A readable name for an item, category or purpose code (the code itself if unknown)."""
    lang = "ko" if locale == "ko" else "en"
    if code in ITEMS:
        item = ITEMS[code]
        return item.ko if lang == "ko" else item.en
    for table in (PURPOSES, CATEGORIES):
        if code in table:
            return table[code].get(lang)
    return code
