"""The one Jinja2 environment for pages: autoescape on, StrictUndefined, texts by language."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.config import Settings
from app.vocabulary import CATEGORIES, GROUNDS, item_label
from app.web import page_area
from app.web.i18n import LANG_COOKIE, LANG_QUERY, LOCALES, Locale, Translator, choose_locale

LANG_COOKIE_MAX_AGE = 365 * 24 * 3600

_WEEKDAYS_KO = "월화수목금토일"


def _as_datetime(value: datetime | str) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def category_label(code: str, lang: str) -> str:
    labels = CATEGORIES.get(code)
    return labels.get(lang) if labels else code


def ground_label(code: str, lang: str) -> str:
    """A refusal ground in the page's language (the stored views carry the request's)."""
    return GROUNDS[code].label(lang)


def ground_source(code: str, lang: str) -> str:
    return GROUNDS[code].source(lang)


class Pages:
    """Renders page templates (``app/web/templates``) into HTML responses."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.display_timezone)
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("app.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["local_date"] = self.local_date
        self.env.filters["local_datetime"] = self.local_datetime
        self.env.filters["item_name"] = item_label  # item, category or purpose code → label
        self.env.filters["category_name"] = category_label
        self.env.filters["ground_label"] = ground_label
        self.env.filters["ground_source"] = ground_source

    # -- formatting ------------------------------------------------------------------------

    def local_date(self, value: datetime | str | None, lang: str = "ko") -> str:
        """A date in the display zone: 2026년 11월 26일 (목) / Thu 26 Nov 2026."""
        if value is None:
            return ""
        moment = _as_datetime(value).astimezone(self.zone)
        if lang == "ko":
            weekday = _WEEKDAYS_KO[moment.weekday()]
            return f"{moment.year}년 {moment.month}월 {moment.day}일 ({weekday})"
        return moment.strftime("%a %-d %b %Y")

    def local_datetime(self, value: datetime | str | None, lang: str = "ko") -> str:
        if value is None:
            return ""
        moment = _as_datetime(value).astimezone(self.zone)
        return f"{self.local_date(moment, lang)} {moment:%H:%M}"

    # -- rendering -------------------------------------------------------------------------

    def locale(self, request: Request) -> Locale:
        return choose_locale(request, self.settings.default_locale)

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        """The page in the request's language, with the layout's common context."""
        lang = self.locale(request)
        values: dict[str, Any] = {
            "request": request,
            "lang": lang,
            "t": Translator(lang),
            "area": page_area(request.url.path) or "site",
            "csrf_token": request.scope.get("state", {}).get("csrf_token", ""),
            "lang_links": self.language_links(request, lang),
            "zone_label": "KST" if self.settings.display_timezone == "Asia/Seoul" else "",
            **(context or {}),
        }
        html = self.env.get_template(template).render(values)
        response = HTMLResponse(html, status_code=status, headers=headers)
        if (
            request.query_params.get(LANG_QUERY) in LOCALES
            and request.cookies.get(LANG_COOKIE) != lang
        ):
            response.set_cookie(
                LANG_COOKIE,
                lang,
                max_age=LANG_COOKIE_MAX_AGE,
                path="/",
                httponly=True,
                secure=self.settings.secure_cookies,
                samesite="lax",
            )
        return response

    @staticmethod
    def language_links(request: Request, lang: str) -> list[dict[str, Any]]:
        """The switch: this page in each language (a GET link, so it works without JS)."""
        links = []
        for code in LOCALES:
            query = {k: v for k, v in request.query_params.items() if k != LANG_QUERY}
            query[LANG_QUERY] = code
            links.append(
                {
                    "lang": code,
                    "href": f"{request.url.path}?{urlencode(query)}",
                    "current": code == lang,
                }
            )
        return links
