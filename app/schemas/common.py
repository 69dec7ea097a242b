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


PROBLEM_MEANINGS: dict[int, str] = {
    400: "The body could not be read (not JSON, or not UTF-8)",
    401: "No valid bearer token (or signature)",
    403: "Not allowed for this caller's role",
    404: "Not found (or not this caller's)",
    409: "Conflicts with the current state",
    410: "No longer available",
    413: "The body is larger than the service accepts",
    415: "The body is not sent as `application/json`",
    422: "A field is not valid: see errors",
    429: "Too many requests: retry after Retry-After seconds",
    # The unit of work could not be committed (code ``commit-failed``): nothing was stored.
    503: "Not saved; retry after `Retry-After` seconds (with the same Idempotency-Key)",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
# Any route that reads a body: unreadable (400), too large (413), not JSON (415), invalid (422).
BODY_PROBLEMS = (400, 413, 415, 422)
# Any route behind a bearer token.
AUTH_PROBLEMS = (401, 403)


def problems(
    *statuses: int, described: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The problem+json responses a route (or router) declares, each status once."""
    meanings = PROBLEM_MEANINGS | (described or {})
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        response: dict[str, Any] = {
            "model": ProblemDetail,
            "description": meanings[status],
            "content": {"application/problem+json": {}},
        }
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        responses[status] = response
    return responses


# The routers for subjects, staff, processors and partners: every problem any of their routes
# can answer (routes with a body, a bearer token, ids in the path, state, rate limits, and a
# commit that failed).
PROBLEM_RESPONSES = problems(*BODY_PROBLEMS, *AUTH_PROBLEMS, 404, 409, 429, 503)
