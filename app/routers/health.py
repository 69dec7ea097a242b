"""Operations: liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import health
from app.deps import ClockDep
from app.schemas.common import HealthStatus

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthStatus, summary="The process is up")
async def healthz() -> HealthStatus:
    return HealthStatus(status="ok")


# Load balancers and `curl -I` probe with HEAD; kept out of the contract like any HEAD twin.
@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    return Response(media_type="application/json")


@router.get(
    "/readyz",
    response_model=HealthStatus,
    summary="The database is reachable and its schema is at head",
    responses={503: {"description": "Not ready", "content": {"application/problem+json": {}}}},
)
async def readyz(request: Request) -> HealthStatus:
    await health.check_ready(request.app.state.db, expected_head=request.app.state.schema_head)
    return HealthStatus(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request, clock: ClockDep) -> Response:
    app_metrics = request.app.state.metrics
    await health.refresh_gauges(request.app.state.db, app_metrics, now=clock.now())
    return Response(generate_latest(app_metrics.registry), media_type=CONTENT_TYPE_LATEST)
