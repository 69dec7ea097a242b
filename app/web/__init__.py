"""Server-rendered pages: the privacy center (/privacy/) and the support console (/console/).

One Jinja2 environment (``templating``), one layout (``templates/base.html``), one catalogue per
language (``messages/ko.yaml``, ``messages/en.yaml``, read by ``i18n``), one session-cookie
helper (``session``), CSRF on every form (``csrf``), error pages (``errors``), and the offline
API docs (``docs``). Pages are routers over the same services as the API.
"""

from __future__ import annotations

# The page areas: every path under one of these is a page (HTML errors, CSRF, no-store).
PAGE_AREAS: tuple[str, ...] = ("/privacy", "/console", "/partner")


def page_area(path: str) -> str | None:
    """The area a path belongs to ("privacy", "console"), or None for the API and the rest."""
    for prefix in PAGE_AREAS:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix.lstrip("/")
    return None
