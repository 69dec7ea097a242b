"""create_app(): routers, error handlers, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from app.clock import Clock, SystemClock
from app.config import Settings, check_production, ensure_keys, get_settings
from app.crypto import Crypto
from app.datamap.loader import load_configured_datamap
from app.db import Database, database_url
from app.input_guard import refuse_nul
from app.middleware import (
    AccessLogMiddleware,
    BodySizeLimitMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    UnhandledErrorMiddleware,
)
from app.migrate import head_revision
from app.observability import Metrics
from app.outbox.worker import Worker
from app.problems import install_problem_handlers, unhandled_error
from app.routers import (
    console,
    console_auth,
    console_intake,
    console_requests,
    health,
    partner,
    partner_pages,
    privacy,
    privacy_forms,
    privacy_verify,
    processors,
    requests,
    staff,
    staff_reports,
    support,
    usage,
    verifications,
)
from app.security import TokenService
from app.web import docs
from app.web.csrf import CsrfMiddleware
from app.web.errors import refuse_csrf
from app.web.templating import Pages
from app.worker import build_context, build_registry

logger = logging.getLogger("dsr.app")

API_DESCRIPTION = """
Data-subject requests under Korea's Personal Information Protection Act (PIPA):
access, correction, deletion and suspension of processing, answered within 10 days.

Errors are RFC 9457 `application/problem+json` with a stable `code`.
"""

STATIC_DIR = Path(__file__).parent / "web" / "static"
# /v1/ answers that hold no personal data and may be cached (everything else: no-store).
PUBLIC_API_PATHS = frozenset({"/v1/refusal-grounds"})

# Headers a browser front-end on another origin (DSR_CORS_ORIGINS) may send and read.
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]
CORS_EXPOSED_HEADERS = ["Retry-After", "X-Request-ID", "Idempotent-Replayed", "Location"]


def http_client() -> httpx.AsyncClient:
    """The one outbound HTTP client: gateways, processors' webhooks, internal sources."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(15.0, connect=5.0),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        headers={"User-Agent": "qx-dsr"},
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    url = await asyncio.to_thread(database_url, settings)
    app.state.db = Database.connect(url, pool_size=settings.db_pool_size)
    app.state.http = http_client()
    stop = asyncio.Event()
    worker_task: asyncio.Task[None] | None = None
    if app.state.start_worker:
        ctx = build_context(
            settings=settings,
            db=app.state.db,
            crypto=app.state.crypto,
            clock=app.state.clock,
            http=app.state.http,
            datamap=app.state.datamap,
        )
        worker_task = asyncio.create_task(Worker(ctx, build_registry()).run_forever(stop))
    try:
        yield
    finally:
        stop.set()
        if worker_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
        await app.state.http.aclose()
        await app.state.db.dispose()


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    start_worker: bool | None = None,
) -> FastAPI:
    """Build the application. Nothing connects until the lifespan starts."""
    settings = ensure_keys(settings or get_settings())
    check_production(settings)
    app = FastAPI(
        title="qx-dsr",
        version="1.0.0",
        summary="Data-subject requests (PIPA) for a parcel carrier",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by app.web.docs
        redoc_url=None,
        # Before any other dependency: PostgreSQL cannot store a NUL character.
        dependencies=[Depends(refuse_nul)],
    )
    metrics = Metrics()
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.crypto = Crypto.from_settings(settings)
    app.state.tokens = TokenService(settings)
    app.state.pages = Pages(settings)
    app.state.datamap = load_configured_datamap(settings)  # an invalid map stops start-up
    app.state.metrics = metrics
    app.state.schema_head = head_revision()
    app.state.start_worker = settings.run_worker if start_worker is None else start_worker

    install_problem_handlers(app)
    # Busiest first: FastAPI tries the routers in this order, every route of each, twice per
    # request (about 2.5 µs a route); a usage check behind the console's pages paid ~0.4 ms.
    # The areas' paths do not overlap, so the order changes nothing else.
    app.include_router(usage.router)
    app.include_router(requests.router)
    app.include_router(verifications.router)
    app.include_router(health.router)
    app.include_router(staff.router)
    app.include_router(staff_reports.router)
    app.include_router(staff.audit_router)
    app.include_router(support.router)
    app.include_router(processors.router)
    app.include_router(partner.router)
    # The pages.
    app.include_router(console_auth.router)
    app.include_router(console.router)
    app.include_router(console_intake.router)
    app.include_router(console_requests.router)
    app.include_router(privacy_forms.router)
    app.include_router(privacy.router)
    app.include_router(privacy_verify.router)
    app.include_router(partner_pages.router)
    app.include_router(docs.router)
    # /static/vendor before /static: the first matching mount answers.
    app.mount(docs.VENDOR_URL, docs.vendor_assets(), name="vendor")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Added innermost first; the request id (outermost) must exist before anything logs.
    app.add_middleware(UnhandledErrorMiddleware, handler=unhandled_error)
    app.add_middleware(
        CsrfMiddleware,
        key=settings.key_bytes("token_signing_key"),
        secure=settings.secure_cookies,
        refuse=refuse_csrf,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        SecurityHeadersMiddleware,
        frame_ancestors=settings.frame_ancestors,
        hsts=settings.env == "prod",
        public_paths=PUBLIC_API_PATHS,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            allow_credentials=False,  # bearer tokens, never the pages' cookies
            max_age=600,
        )
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    return app
