"""Standard Webhooks 1.0: event types, body, secrets and signatures.

A partner verifies what we send with ``standardwebhooks.Webhook(secret).verify(body, headers)``;
we verify what partners send (acknowledgements) with the same scheme.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from app.errors import SignatureInvalid

EventType = Literal[
    "personal_data.corrected",
    "personal_data.deleted",
    "processing.suspended",
    "personal_data.correction_requested",
    "personal_data.deletion_requested",
]
# What a processor is told by default: the change was made.
EVENT_TYPES: tuple[EventType, ...] = (
    "personal_data.corrected",
    "personal_data.deleted",
    "processing.suspended",
)
# What a controller that supplied the data is asked (Enforcement Decree Art. 43(2)).
CONTROLLER_EVENT_TYPES: tuple[EventType, ...] = (
    "personal_data.correction_requested",
    "personal_data.deletion_requested",
)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
WEBHOOK_ID_PREFIX = "msg_"
# A signed message older or newer than this (against our clock) is refused, as the package does.
TIMESTAMP_TOLERANCE_SECONDS = 300


# --- ids, secrets, bodies -------------------------------------------------------------------


def webhook_id(message_id: uuid.UUID) -> str:
    """The ``webhook-id`` of a delivery: stable across retries and replays (the outbox id)."""
    return f"{WEBHOOK_ID_PREFIX}{message_id.hex}"


def parse_webhook_id(value: str) -> uuid.UUID | None:
    """The outbox id behind a ``webhook-id``; None when it is not one of ours."""
    if not value.startswith(WEBHOOK_ID_PREFIX):
        return None
    try:
        return uuid.UUID(hex=value[len(WEBHOOK_ID_PREFIX) :])
    except ValueError:
        return None


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def event_body(*, event_type: str, occurred_at: datetime, data: Mapping[str, Any]) -> bytes:
    """The exact bytes sent: ``{type, timestamp, data}`` as compact UTF-8 JSON."""
    if event_type not in EVENT_TYPES and event_type not in CONTROLLER_EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    document = {
        "type": event_type,
        "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
        "data": dict(data),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()


# --- signatures -----------------------------------------------------------------------------


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(keys: Iterable[bytes], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64>`` per key, space-separated."""
    return " ".join(
        "v1," + base64.b64encode(_signature(key, msg_id, timestamp, body)).decode() for key in keys
    )


def signed_headers(
    keys: Iterable[bytes], *, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one send."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(keys, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def verify(keys: Iterable[bytes], *, headers: Mapping[str, str], body: bytes, now: datetime) -> str:
    """Check a partner's signed message; its ``webhook-id``, or SignatureInvalid."""
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and stamp and signatures) or len(msg_id) > 128:
        raise SignatureInvalid(
            "The webhook-id, webhook-timestamp and webhook-signature headers are required."
        )
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureInvalid("The webhook-timestamp header is not a number.") from None
    if abs(now.timestamp() - timestamp) > TIMESTAMP_TOLERANCE_SECONDS:
        raise SignatureInvalid("The webhook-timestamp is too far from the current time.")
    expected = [_signature(key, msg_id, timestamp, body) for key in keys]
    for candidate in signatures.split(" "):
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        if any(hmac.compare_digest(given, signature) for signature in expected):
            return msg_id
    raise SignatureInvalid("No signature matches.")
