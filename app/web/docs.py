"""/docs (Swagger UI) and /redoc, working offline: their assets are served from /static/vendor
(the ``fastapi-offline`` package ships them) and started by a script of ours, not inline."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.web.templating import Pages

VENDOR_URL = "/static/vendor"

router = APIRouter(include_in_schema=False)


def vendor_assets() -> StaticFiles:
    """Swagger UI and ReDoc bundles, as shipped by the fastapi-offline package."""
    directory = Path(str(resources.files("fastapi_offline").joinpath("static")))
    return StaticFiles(directory=directory)


def _render(request: Request, template: str) -> HTMLResponse:
    pages: Pages = request.app.state.pages
    html = pages.env.get_template(template).render(
        title=request.app.title,
        openapi_url=request.app.openapi_url,
        vendor=VENDOR_URL,
    )
    return HTMLResponse(html)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _render(request, "docs/swagger.html")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _render(request, "docs/redoc.html")
