"""One error hierarchy for the services; mapped to RFC 9457 problem+json in one place."""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "urn:qx-dsr:problem:"


class DomainError(Exception):
    """Base: carries its HTTP status and stable problem code. Never holds personal data."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    # True for errors that record state (a wrong code counts): the unit of work commits anyway.
    keep_changes: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}


class InvalidInput(DomainError):
    status = 422
    code = "invalid-input"
    title = "The request is not valid"


class ValidationFailed(InvalidInput):
    """One body field is not valid; names it by JSON pointer, never echoes its value."""

    code = "validation-failed"

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(
            "One or more fields are invalid; see errors.",
            errors=[{"pointer": pointer, "location": "body", "message": message}],
        )


class Unauthenticated(DomainError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


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


class IllegalTransition(Conflict):
    code = "illegal-transition"
    title = "Not allowed in the request's current state"


class DuplicateRequest(Conflict):
    code = "duplicate-request"
    title = "An open request of this type already exists"


class IdempotencyKeyReused(DomainError):
    status = 422
    code = "idempotency-key-reused"
    title = "The Idempotency-Key was used with a different body"


class FourEyesRequired(Forbidden):
    code = "four-eyes"
    title = "Another privacy officer must decide this"


class PostponementNotAllowed(Conflict):
    code = "postponement-not-allowed"
    title = "This request cannot be postponed"


class ObjectionNotAllowed(Conflict):
    code = "objection-not-allowed"
    title = "An objection cannot be made now"


class Gone(DomainError):
    status = 410
    code = "gone"
    title = "No longer available"


class PayloadDestroyed(Gone):
    code = "payload-destroyed"
    title = "The message's content was destroyed after its retention period"


class RateLimited(DomainError):
    status = 429
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class VerificationUnknown(NotFound):
    code = "verification-unknown"
    title = "No such verification"


class VerificationExpired(Gone):
    code = "verification-expired"
    title = "The code has expired; ask for a new one"


class VerificationDead(Gone):
    code = "verification-dead"
    title = "Too many wrong codes; ask for a new one"


class VerificationUsed(Gone):
    code = "verification-used"
    title = "The code was already used; ask for a new one"


class VerificationCodeWrong(DomainError):
    status = 400
    code = "verification-code-wrong"
    title = "The code is not right"
    keep_changes = True  # the wrong try must count even though the request fails


class ServiceUnavailable(DomainError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


class CommitFailed(ServiceUnavailable):
    """The unit of work could not be committed: nothing is known stored; retry shortly."""

    code = "commit-failed"
    title = "The change could not be saved; try again"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(max(1, int(retry_after)))


def problem_type(code: str) -> str:
    return PROBLEM_BASE + code


class WebhookUrlRefused(InvalidInput):
    code = "webhook-url-refused"
    title = "The webhook URL is not allowed"


class SignatureInvalid(Unauthenticated):
    code = "signature-invalid"
    title = "The signature does not verify"
