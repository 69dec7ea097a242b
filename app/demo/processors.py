"""The processors of the privacy policy's section 3 (outsourcing), for the demo and for seeding
the processors registry: ``[p.seed() for p in PROCESSORS]``; and the marketplace that supplies
recipients' data (a controller, Enforcement Decree Art. 43(2)): ``CONTROLLERS``.

Partners that run no webhook receiver (India Post, Kuroneko Mail, ...) are told by e-mail."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from app.schemas.processors import SEVERAL_NATIONS

Service = Literal["carrier", "customs_broker", "messaging", "marketplace"]

# The demo's partners without a webhook receiver: told by e-mail, confirming on a page.
EMAIL_PARTNERS = frozenset(
    {"india-post", "kuroneko-mail", "pos-laju", "hongkong-post", "tw-post", "yu-pack", "qoo10"}
)


@dataclass(frozen=True)
class DemoProcessor:
    code: str  # lower-case, URL-safe: /v1/processors/{code}
    name: str
    nation: str | None  # ISO 3166-1 alpha-2; None for "other nations"
    service: Service

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def seed(self) -> dict[str, str]:
        """What ``processors.ensure_processors`` registers for this partner."""
        item = {"code": self.code, "name": self.name, "nation": self.nation or SEVERAL_NATIONS}
        if self.service == "marketplace":
            item["party"] = "controller"
        if self.code in EMAIL_PARTNERS:
            item |= {"channel": "email", "email": f"dsr@{self.code}.partner.example"}
        return item


def _p(code: str, name: str, nation: str | None, service: Service = "carrier") -> DemoProcessor:
    return DemoProcessor(code, name, nation, service)


PROCESSORS: tuple[DemoProcessor, ...] = (
    # Outsourced handling of international shipping
    _p("hct", "HCT", "TW"),
    _p("tw-familymart", "TW FamilyMart", "TW"),
    _p("tw-post", "TW Post", "TW"),
    _p("ecms", "ECMS", "TW"),
    _p("dhlec-my", "DHLeC MY", "MY"),
    _p("wahana", "Wahana", "MY"),
    _p("pos-laju", "Pos Laju", "MY"),
    _p("skynet", "SKYNET", "MY"),
    _p("dhlec-us", "DHLeC US", "US"),
    _p("ups", "UPS", "US"),
    _p("ninjavan", "Ninjavan", "SG"),
    _p("shiprocket", "Shiprocket", "SG"),
    _p("singpost", "SingPost", "SG"),
    _p("vr1-express", "VR1 Express", "ID"),
    _p("pantos-id", "Pantos Indonesia", "ID"),
    _p("india-post", "India Post", "IN"),
    _p("yamato", "Yamato", "JP"),
    _p("ecohai", "Ecohai", "JP"),
    _p("kuroneko-mail", "Kuroneko Mail", "JP"),
    _p("nekopos", "Nekopos", "JP"),
    _p("sagawa", "Sagawa", "JP"),
    _p("yu-pack", "Yu-Pack", "JP"),
    _p("yto-express", "YTO Express", "CN"),
    _p("sf-express", "SF Express", "CN"),
    _p("leny-express", "Leny Express", "CN"),
    _p("hanjin", "Hanjin (KR)", "KR"),
    _p("kyoungdong", "Kyoungdong", "KR"),
    _p("koreapost", "KoreaPost", "KR"),
    _p("ilyang", "Ilyang", "KR"),
    _p("korea-express", "Korea Express", "KR"),
    _p("logen", "Logen (KR)", "KR"),
    _p("daesin", "Daesin", "KR"),
    _p("chainlogis", "ChainLogis", "KR"),
    _p("efs", "EFS", "KR"),
    _p("carrybees", "Carrybees", "HK"),
    _p("hongkong-post", "Hong Kong Post", "HK"),
    _p("dhl-express", "DHL Express", None),
    _p("fedex-mail", "FEDEX Mail", None),
    # Agency for customs clearance reporting for import/export
    _p("yuhan-technos", "Yuhan Technos", "KR", "customs_broker"),
    _p("sungwon-global", "Sungwon Global Cargo", "KR", "customs_broker"),
    _p("kochina", "KOCHINA", "HK", "customs_broker"),
    # Agency for sending text messages and CS
    _p("mnwise", "M&Wise", "KR", "messaging"),
    _p("lguplus", "LGUplus", "KR", "messaging"),
    _p("channel-corp", "㈜채널코퍼레이션", "KR", "messaging"),
    _p("daou-tech", "㈜다우기술", "KR", "messaging"),
    _p("wavecell-sg", "Wavecell-sg", "SG", "messaging"),
    _p("fortdigital", "FortDigital", None, "messaging"),
    _p("wavecell-global", "Wavecell-global", None, "messaging"),
    _p("rapidsms", "RapidSMS", None, "messaging"),
)

# The marketplace whose orders name the recipient: it supplied the recipient's data.
CONTROLLERS: tuple[DemoProcessor, ...] = (_p("qoo10", "Qoo10", "SG", "marketplace"),)

CARRIERS = tuple(p for p in PROCESSORS if p.service == "carrier")
BY_CODE = {p.code: p for p in PROCESSORS}
