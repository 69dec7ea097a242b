"""One error hierarchy for the services; mapped to RFC 9457 problem+json in one place."""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "urn:qx-dsr:problem:"


class DomainError(Exception):
    """Base: carries its HTTP status and stable problem code. Never holds personal data."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}


class InvalidInput(DomainError):
    status = 422
    code = "invalid-input"
    title = "The request is not valid"


class Unauthenticated(DomainError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    title = "Not allowed for this role"


class NotFound(DomainError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflicts with the current state"


class Gone(DomainError):
    status = 410
    code = "gone"
    title = "No longer available"


class RateLimited(DomainError):
    status = 429
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class ServiceUnavailable(DomainError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


def problem_type(code: str) -> str:
    return PROBLEM_BASE + code


class WebhookUrlRefused(InvalidInput):
    code = "webhook-url-refused"
    title = "The webhook URL is not allowed"


class SignatureInvalid(Unauthenticated):
    code = "signature-invalid"
    title = "The signature does not verify"
