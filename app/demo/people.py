"""Generated (not real) people: Korean names, addresses and numbers, and a few foreign ones."""

from __future__ import annotations

import random
from dataclasses import dataclass

SURNAMES = (
    "김이박최정강조윤장임한오서신권황안송류홍전고문양손배백허남심노하곽성차주우구민유"
    "나진지엄채원천방공현함변염여추도소석선설마길연위표명기반라왕금옥육인맹제모탁국어"
    "은편용예경봉사부황보"
)
GIVEN = (
    "민서지현우준예하도윤수아은연진호영성재태유경나라희빈주원채시건동혁규승훈인혜소미정다율찬솔한결"
)

CITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("서울특별시 강남구", ("테헤란로", "논현로", "도산대로", "봉은사로")),
    ("서울특별시 마포구", ("월드컵북로", "양화로", "독막로")),
    ("서울특별시 강서구", ("공항대로", "화곡로", "강서로")),
    ("서울특별시 송파구", ("올림픽로", "송파대로", "백제고분로")),
    ("부산광역시 해운대구", ("해운대로", "센텀중앙로", "좌동순환로")),
    ("부산광역시 부산진구", ("중앙대로", "가야대로")),
    ("인천광역시 연수구", ("컨벤시아대로", "송도과학로")),
    ("대구광역시 수성구", ("달구벌대로", "동대구로")),
    ("대전광역시 유성구", ("대학로", "계룡로")),
    ("광주광역시 서구", ("상무대로", "시청로")),
    ("울산광역시 남구", ("삼산로", "번영로")),
    ("경기도 성남시 분당구", ("판교역로", "불정로", "황새울로")),
    ("경기도 수원시 영통구", ("광교중앙로", "봉영로")),
    ("경기도 고양시 일산동구", ("중앙로", "정발산로")),
    ("강원특별자치도 춘천시", ("중앙로", "금강로")),
    ("충청북도 청주시 흥덕구", ("직지대로", "가로수로")),
    ("전북특별자치도 전주시 완산구", ("팔달로", "효자로")),
    ("경상남도 창원시 성산구", ("중앙대로", "원이대로")),
    ("제주특별자치도 제주시", ("연북로", "노형로")),
)

# Foreign recipients for international deliveries, by the carrier's nation.
FOREIGN: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "TW": (
        ("陳美玲", "林志豪", "黃雅婷"),
        ("台北市信義區松仁路 {n}號", "台中市西屯區台灣大道 {n}號"),
        "+8869",
    ),
    "JP": (
        ("佐藤 美咲", "鈴木 大輔", "高橋 結衣"),
        ("東京都渋谷区神南1-{n}", "大阪府大阪市北区梅田2-{n}"),
        "+8190",
    ),
    "SG": (
        ("Tan Wei Ming", "Lim Hui Min"),
        ("{n} Orchard Road, Singapore", "{n} Tampines Ave 5, Singapore"),
        "+659",
    ),
    "MY": (("Nur Aisyah", "Lee Chong Wei"), ("{n} Jalan Ampang, Kuala Lumpur",), "+6012"),
    "CN": (
        ("王芳", "张伟", "刘洋"),
        ("上海市浦东新区世纪大道 {n}号", "深圳市南山区科技园路 {n}号"),
        "+86139",
    ),
    "US": (("Emily Johnson", "Michael Park"), ("{n} Wilshire Blvd, Los Angeles, CA",), "+1213"),
    "HK": (("陳家明", "Wong Ka Yan"), ("香港九龍彌敦道 {n}號",), "+8529"),
}


@dataclass(frozen=True)
class Person:
    name: str
    phone_e164: str
    email: str
    address: str

    @property
    def phone_national(self) -> str:
        """010-1234-5678 for Korean mobiles."""
        digits = "0" + self.phone_e164[3:]
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"

    @property
    def phone_digits(self) -> str:
        return "0" + self.phone_e164[3:]


class PeopleFactory:
    """Deterministic given a seed; phones and e-mails are unique within one factory."""

    def __init__(self, seed: int, *, reserved_phones: set[str] | None = None) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - demo data, not security
        self._phones: set[str] = set(reserved_phones or ())
        self._serial = 0

    def name(self) -> str:
        return self.rng.choice(SURNAMES) + "".join(self.rng.choices(GIVEN, k=2))

    def address(self) -> str:
        city, roads = self.rng.choice(CITIES)
        line = f"{city} {self.rng.choice(roads)} {self.rng.randint(1, 399)}"
        if self.rng.random() < 0.6:
            floor, unit = self.rng.randint(1, 25), self.rng.randint(1, 4)
            line += f", {self.rng.randint(101, 120)}동 {floor}{unit:02d}호"
        return line

    def phone(self) -> str:
        while True:
            number = f"+8210{self.rng.randint(2000, 9999)}{self.rng.randint(0, 9999):04d}"
            if number not in self._phones:
                self._phones.add(number)
                return number

    def person(self) -> Person:
        self._serial += 1
        local = self.rng.choice(("haneul", "minjun", "seoyeon", "jiho", "yuna", "dohyun", "sumin"))
        domain = self.rng.choice(("example.com", "example.net", "example.org"))
        return Person(
            name=self.name(),
            phone_e164=self.phone(),
            email=f"{local}.{self._serial}@{domain}",
            address=self.address(),
        )

    def foreigner(self, nation: str | None) -> tuple[str, str, str]:
        """(name, phone, address) of a recipient abroad; a Korean one for domestic carriers."""
        if nation not in FOREIGN:
            person = self.person()
            return person.name, person.phone_digits, person.address
        names, addresses, prefix = FOREIGN[nation]
        phone = f"{prefix}{self.rng.randint(1000000, 9999999)}"
        address = self.rng.choice(addresses).format(n=self.rng.randint(1, 300))
        return self.rng.choice(names), phone, address

    def device_serial(self) -> str:
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        return "R" + "".join(self.rng.choices("0123456789" + letters, k=10))

    def customs_code(self) -> str:
        return "P" + "".join(self.rng.choices("0123456789", k=12))

    def ip_address(self) -> str:
        # Documentation ranges (RFC 5737): never a real host.
        block = self.rng.choice(("192.0.2", "198.51.100", "203.0.113"))
        return f"{block}.{self.rng.randint(1, 254)}"
