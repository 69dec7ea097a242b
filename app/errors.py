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
    """The body or query is not valid: the same code as a schema error (one code per kind)."""

    status = 422
    code = "validation-failed"
    title = "The request is not valid"


class ValidationFailed(InvalidInput):
    """One body field is not valid; names it by JSON pointer, never echoes its value."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(
            "One or more fields are invalid; see errors.",
            errors=[{"pointer": pointer, "location": "body", "message": message}],
        )


class Unauthenticated(DomainError):
    """A bearer token was sent and does not verify."""

    status = 401
    code = "unauthenticated"
    title = "Authentication required"
    # RFC 6750 3.1: the error code only when the request carried a token.
    challenge: ClassVar[str | None] = 'Bearer error="invalid_token"'

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        if self.challenge:
            self.headers["WWW-Authenticate"] = self.challenge


class CredentialsMissing(Unauthenticated):
    """No bearer token at all: challenge without an error code (RFC 6750 3.1)."""

    challenge = "Bearer"


class SessionRequired(Unauthenticated):
    """A page needs a signed-in session and the browser has none."""

    code = "session-required"
    title = "Sign in first"


class SessionExpired(Unauthenticated):
    """The page session's token no longer verifies (expired, or not ours)."""

    code = "session-expired"
    title = "The session has ended; verify again"


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


class ReportNotReady(Conflict):
    """The access report is still being prepared: try again after Retry-After."""

    code = "report-not-ready"
    title = "The access report is not ready yet"

    def __init__(self, detail: str, *, status: str, retry_after: int) -> None:
        super().__init__(detail, current_status=status)
        self.headers["Retry-After"] = str(retry_after)


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


class ReportNotForStaff(Forbidden):
    code = "report-not-for-staff"
    title = "The subject downloads this report in the app"


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


class ConfirmationLinkInvalid(NotFound):
    """A partner's confirmation link that is not ours, tampered, or not for this notice."""

    code = "confirmation-link-invalid"
    title = "This confirmation link is not valid"


class ConfirmationLinkExpired(Gone):
    code = "confirmation-link-expired"
    title = "This confirmation link has expired"


class ConfirmationLinkUsed(Conflict):
    code = "confirmation-link-used"
    title = "This confirmation link was already used"


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


class DatabaseUnreachable(ServiceUnavailable):
    """The database dropped the connection mid-call (a restart, a failover): retry shortly."""

    def __init__(self) -> None:
        super().__init__("The database could not be reached; try again shortly.")
        self.headers["Retry-After"] = "1"


def problem_type(code: str) -> str:
    return PROBLEM_BASE + code


class WebhookUrlRefused(InvalidInput):
    code = "webhook-url-refused"
    title = "The webhook URL is not allowed"


class SignatureInvalid(Unauthenticated):
    code = "signature-invalid"
    title = "The signature does not verify"
    # Partners authenticate with Standard Webhooks signatures, not bearer tokens.
    challenge = None
