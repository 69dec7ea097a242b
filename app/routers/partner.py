"""Partners (processors) calling us: acknowledgements signed like our webhooks."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from app.deps import ClientIpDep, ClockDep, CryptoDep, SessionDep
from app.schemas.common import PROBLEM_RESPONSES
from app.schemas.processors import AcknowledgementCreate, AcknowledgementReceipt
from app.webhooks import acknowledgements

router = APIRouter(prefix="/v1/partner", tags=["partners"], responses=PROBLEM_RESPONSES)

_SIGNED_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": AcknowledgementCreate.model_json_schema(),
            }
        },
    },
    "parameters": [
        {
            "name": header,
            "in": "header",
            "required": required,
            "schema": {"type": "string"},
            "description": description,
        }
        for header, required, description in (
            ("webhook-id", True, "Your own unique id for this acknowledgement"),
            ("webhook-timestamp", True, "Unix seconds; within 5 minutes of our clock"),
            (
                "webhook-signature",
                True,
                "v1,<base64 HMAC-SHA256 of id.timestamp.body> (your secret)",
            ),
            ("webhook-processor", False, "Your processor code (else taken from the webhook_id)"),
        )
    ],
}


@router.post(
    "/acknowledgements",
    status_code=status.HTTP_201_CREATED,
    response_model=AcknowledgementReceipt,
    summary="Confirm a notice was applied (or rejected); signed with your webhook secret",
    openapi_extra=_SIGNED_BODY,
)
async def acknowledge(
    request: Request,
    session: SessionDep,
    crypto: CryptoDep,
    clock: ClockDep,
    client_ip: ClientIpDep,
) -> AcknowledgementReceipt:
    receipt = await acknowledgements.acknowledge_notice(
        session,
        crypto=crypto,
        now=clock.now(),
        body=await request.body(),
        headers=dict(request.headers),
        client_ip=client_ip,
    )
    return AcknowledgementReceipt(
        webhook_id=receipt.webhook_id,
        processor=receipt.processor,
        status=receipt.status,
        received_at=receipt.received_at,
        duplicate=receipt.duplicate,
    )
