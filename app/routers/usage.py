"""Internal systems: may this person's data be used for this purpose now?"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.deps import ServicePrincipal
from app.retention import restrictions
from app.schemas.common import AUTH_PROBLEMS, BODY_PROBLEMS, problems
from app.schemas.usage import UsageCheckCreate, UsageCheckPublic, UsageReasonPublic

router = APIRouter(prefix="/v1", tags=["internal systems"])


@router.post(
    "/usage-checks",
    response_model=UsageCheckPublic,
    summary="Check before using or providing a person's data",
    description=(
        "Answers `allowed: false` while a correction of the items is pending (policy section 6: "
        "not used or provided) or while processing for the purpose is suspended (PIPA Art. 37). "
        "Service token only. Identifiers are matched by blind index and never stored or logged."
    ),
    responses=problems(*BODY_PROBLEMS, *AUTH_PROBLEMS),
)
async def check_usage(
    body: UsageCheckCreate,
    request: Request,
    _principal: ServicePrincipal,
) -> Response:
    # A hot path (docs/BENCHMARKS.md): one statement on an autocommit connection, and the answer
    # serialised once here (the model validated it when built; FastAPI would check it again).
    state = request.app.state
    async with state.db.autocommit() as connection:
        decision = await restrictions.check_usage(
            connection,
            crypto=state.crypto,
            identifiers=body.identifiers.model_dump(),
            purpose=body.purpose,
            items=body.items,
        )
    state.metrics.usage_checks.labels("allowed" if decision.allowed else "blocked").inc()
    answer = UsageCheckPublic(
        allowed=decision.allowed,
        reasons=[
            UsageReasonPublic(
                code=reason.code,
                request_id=reason.request_id,
                item=reason.item,
                purpose=reason.purpose,
            )
            for reason in decision.reasons
        ],
    )
    return Response(answer.model_dump_json(), media_type="application/json")
