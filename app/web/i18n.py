"""One catalogue of page texts per language (``messages/<lang>.yaml``); Korean by default.

Keys are dotted paths into the YAML (``privacy.start.title``). Texts are plain: Jinja escapes
them, and ``{name}`` placeholders are filled with ``str.format``. A missing key is an error in
every environment, as Jinja's StrictUndefined is for templates.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from starlette.requests import Request

LOCALES: tuple[str, ...] = ("ko", "en")
DEFAULT_LOCALE = "ko"
LANG_COOKIE = "dsr_lang"
LANG_QUERY = "lang"


def _flatten(prefix: str, node: Any, into: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, into)
    elif isinstance(node, str):
        into[prefix] = node
    else:
        raise ValueError(f"catalogue entry {prefix!r} is not text")


@lru_cache(maxsize=len(LOCALES))
def catalogue(lang: str) -> dict[str, str]:
    """Every text of one language, by dotted key."""
    if lang not in LOCALES:
        raise ValueError(f"unknown language {lang!r}")
    source = resources.files("app.web").joinpath("messages", f"{lang}.yaml").read_text("utf-8")
    texts: dict[str, str] = {}
    _flatten("", yaml.safe_load(source) or {}, texts)
    return texts


class Translator:
    """``t("key", n=3)`` in templates and routers: the text in the page's language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._texts = catalogue(lang)

    def __call__(self, key: str, /, **params: Any) -> str:
        try:
            text = self._texts[key]
        except KeyError:
            raise KeyError(f"no text {key!r} in messages/{self.lang}.yaml") from None
        return text.format(**params) if params else text

    def has(self, key: str) -> bool:
        return key in self._texts


def choose_locale(request: Request, default: str = DEFAULT_LOCALE) -> str:
    """The page language: ?lang= (the switch), then the remembered choice, then the default."""
    asked = request.query_params.get(LANG_QUERY)
    if asked in LOCALES:
        return asked
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in LOCALES:
        return remembered
    return default if default in LOCALES else DEFAULT_LOCALE
