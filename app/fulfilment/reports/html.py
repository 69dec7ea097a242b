"""The readable access report (Korean first, English on request)."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache

import jinja2

from app.config import Settings
from app.fulfilment.reports.columns import KST
from app.requests.notices import EXTERNAL_REMEDIES
from app.schemas.reports import (
    AccessReport,
)
from app.vocabulary import item_label

# --- HTML ------------------------------------------------------------------------------------

TEXTS: dict[str, dict[str, str]] = {
    "ko": {
        "title": "개인정보 열람 결과",
        "intro": "「개인정보 보호법」 제35조 및 같은 법 시행령 제41조에 따라 회사가 보유한 "
        "귀하의 개인정보를 알려 드립니다. 같은 기록에 담긴 다른 사람의 정보는 표시하지 않습니다.",
        "subject": "본인 확인 정보",
        "generated": "작성 일시",
        "expires": "열람 가능 기한",
        "items": "1. 보유 중인 개인정보 항목",
        "purposes": "2. 개인정보의 처리 목적",
        "retention": "3. 보유 기간 및 근거",
        "third_parties": "4. 제3자 제공 및 처리위탁 현황",
        "consents": "5. 동의 현황",
        "withheld": "열람이 제한된 항목",
        "category": "분류",
        "item": "항목",
        "role": "구분",
        "collection": "기록",
        "values": "내용",
        "origin": "출처",
        "records": "건수",
        "withheld_value": "열람 제한",
        "omitted": "외 {n}건은 목록에 표시하지 않았습니다.",
        "purpose": "목적",
        "optional": "선택",
        "required": "필수",
        "period": "보유 기간",
        "basis": "근거",
        "until": "보유 종료 예정",
        "processor": "받는 자",
        "nation": "국가",
        "provided": "제공 일시",
        "ground": "제한 사유",
        "explanation": "설명",
        "given": "동의함",
        "not_given": "동의하지 않음",
        "status": "상태",
        "changed": "변경 일시",
        "none": "해당 없음",
        "retained": "6. 다른 법령에 따라 분리 보관 중인 개인정보",
        "retained_intro": "삭제를 요구하신 정보 중 다른 법령이 보존을 정한 정보는 다른 "
        "개인정보와 분리하여 보관하며, 기한이 지나면 파기합니다.",
        "kept": "{law}에 따라 {date}까지 분리 보관",
        "third_party_none": "제3자에게 제공하지 않음",
        "objection": "일부 항목의 열람이 제한되었습니다. 이 결과에 이의가 있으시면 앱이나 "
        "홈페이지 개인정보 권리 행사 메뉴의 요청 내역에서 이의를 제기하실 수 있습니다.",
        "remedies": "개인정보 침해에 대한 신고나 상담이 필요하시면 다음 기관에 문의하실 수 "
        "있습니다:",
        "contact": "문의: {contact}",
        "navigation": "요청으로 돌아가기",
        "print_hint": "인쇄하거나 PDF로 저장하려면 브라우저의 인쇄 기능(Ctrl+P)을 사용하세요. "
        "A4 용지에 맞게 인쇄됩니다.",
    },
    "en": {
        "title": "Access to your personal information",
        "intro": "Under Article 35 of the Personal Information Protection Act and Article 41 of "
        "its Enforcement Decree, this is the personal information we hold about you. Other "
        "people's information in the same records is not shown.",
        "subject": "Verified identifiers",
        "generated": "Generated",
        "expires": "Available until",
        "items": "1. Personal information we hold",
        "purposes": "2. Purposes of processing",
        "retention": "3. Retention period and legal basis",
        "third_parties": "4. Provision to third parties and processors",
        "consents": "5. Consents",
        "withheld": "Items withheld",
        "category": "Category",
        "item": "Item",
        "role": "As",
        "collection": "Record",
        "values": "Values",
        "origin": "Source",
        "records": "Records",
        "withheld_value": "Withheld",
        "omitted": "{n} more records are not listed.",
        "purpose": "Purpose",
        "optional": "Optional",
        "required": "Required",
        "period": "Period",
        "basis": "Legal basis",
        "until": "Kept until",
        "processor": "Recipient",
        "nation": "Nation",
        "provided": "Provided",
        "ground": "Ground",
        "explanation": "Explanation",
        "given": "Given",
        "not_given": "Not given",
        "status": "Status",
        "changed": "Changed",
        "none": "None",
        "retained": "6. Personal information kept separately under another law",
        "retained_intro": "Information you asked us to delete that another law requires us to "
        "keep is stored apart from all other personal information and destroyed when its "
        "period ends.",
        "kept": "Kept separately under {law} until {date}",
        "third_party_none": "Not provided to third parties",
        "objection": "Some items were withheld. If you disagree with this result, you can object "
        "from your request in the app or the privacy center on our homepage.",
        "remedies": "To report an infringement of your personal information or ask for advice, "
        "you can also contact:",
        "contact": "Contact: {contact}",
        "navigation": "Back to the request",
        "print_hint": "To print or save as PDF, use your browser's print command (Ctrl+P). "
        "It prints on A4.",
    },
}


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("app", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["kst"] = lambda value: (
        value.astimezone(KST).strftime("%Y-%m-%d %H:%M") if value else ""
    )
    env.filters["item_label"] = item_label
    env.filters["kst_date"] = lambda value: (
        value.astimezone(KST).strftime("%Y-%m-%d") if value else ""
    )
    return env


def render_access_report_html(
    report: AccessReport,
    *,
    settings: Settings,
    lang: str = "ko",
    back: tuple[str, str] | None = None,
) -> str:
    """The report as a self-contained, autoescaped page (Korean unless lang='en').

    ``back`` (href, label) adds a link back (the privacy center's request page), hidden in print.
    """
    lang = "en" if lang == "en" else "ko"
    # The same setting as the notices' contact line (DSR_CONTACT_TEXT_KO / _EN).
    contact = settings.contact_text_en if lang == "en" else settings.contact_text_ko
    template = _templates().get_template("access_report.html")
    return template.render(
        report=report,
        lang=lang,
        t=TEXTS[lang],
        # An objection is open only when something was refused (PIPA Art. 38(5)).
        objectable=bool(report.withheld),
        remedies=EXTERNAL_REMEDIES[lang],
        contact=contact,
        back=back,
    )


_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def report_content_security_policy(page: str, *, frame_ancestors: str = "'none'") -> str:
    """The report page's own policy: no script at all, only its inline stylesheet (by hash).

    The page is self-contained so that it still reads well when saved to a file; the service's
    general policy (``style-src 'self'``) would drop its inline style, so it carries this one.
    """
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() + "'"
        for css in _STYLE.findall(page)
    )
    style = hashes or "'none'"
    return (
        f"default-src 'none'; style-src {style}; img-src 'self'; "
        f"base-uri 'none'; form-action 'none'; frame-ancestors {frame_ancestors}"
    )
