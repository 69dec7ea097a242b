"""Bodies shared by every router."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class HealthStatus(BaseModel):
    status: str


class ProblemDetail(BaseModel):
    """RFC 9457 problem details; ``code`` is stable and safe to branch on."""

    type: str = Field(examples=["urn:qx-dsr:problem:not-found"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Field errors: JSON pointer into the body and a message"
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetail, "content": {"application/problem+json": {}}}
    for status in (400, 401, 403, 404, 409, 422, 429)
}
# The unit of work could not be committed (code ``commit-failed``): nothing was stored.
PROBLEM_RESPONSES[503] = {
    "model": ProblemDetail,
    "content": {"application/problem+json": {}},
    "description": "Not saved; retry after `Retry-After` seconds (with the same Idempotency-Key)",
    "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}
