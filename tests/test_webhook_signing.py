"""Signatures agree with the standardwebhooks package; the SSRF guard refuses what it must."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from app.errors import SignatureInvalid, WebhookUrlRefused
from app.webhooks.signing import (
    event_body,
    new_secret,
    parse_webhook_id,
    secret_key,
    sign,
    verify,
    webhook_id,
)
from app.webhooks.url_guard import check_webhook_url, forbidden_address

AT = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def test_our_signature_is_the_packages_signature() -> None:
    secret = new_secret()
    body = event_body(
        event_type="personal_data.deleted", occurred_at=AT, data={"tracking_numbers": ["QX1"]}
    )
    ours = sign([secret_key(secret)], msg_id="msg_1", timestamp=int(AT.timestamp()), body=body)
    assert ours == Webhook(secret).sign("msg_1", AT, body.decode())


def test_verify_accepts_any_listed_key_and_refuses_others() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"webhook_id":"msg_1","status":"applied"}'
    headers = {
        "webhook-id": "ack-1",
        "webhook-timestamp": str(int(AT.timestamp())),
        "webhook-signature": Webhook(old).sign("ack-1", AT, body.decode()),
    }
    assert verify([secret_key(new), secret_key(old)], headers=headers, body=body, now=AT) == "ack-1"
    with pytest.raises(SignatureInvalid):
        verify([secret_key(new)], headers=headers, body=body, now=AT)
    with pytest.raises(SignatureInvalid):
        verify([secret_key(old)], headers=headers, body=body, now=AT + timedelta(minutes=6))
    with pytest.raises(SignatureInvalid):
        verify(
            [secret_key(old)],
            headers={**headers, "webhook-signature": "v1,!!!not-base64 v2,abc"},
            body=body,
            now=AT,
        )


def test_event_body_is_compact_utf8_and_checks_the_type() -> None:
    body = event_body(event_type="personal_data.corrected", occurred_at=AT, data={"name": "김민지"})
    assert (
        body
        == (
            '{"type":"personal_data.corrected","timestamp":"2026-11-26T01:00:00Z",'
            '"data":{"name":"김민지"}}'
        ).encode()
    )
    with pytest.raises(ValueError, match="unknown webhook event type"):
        event_body(event_type="personal_data.sold", occurred_at=AT, data={})


def test_webhook_ids_round_trip() -> None:
    import uuid

    ident = uuid.uuid4()
    assert parse_webhook_id(webhook_id(ident)) == ident
    assert parse_webhook_id("msg_zz") is None
    assert parse_webhook_id("evt_" + ident.hex) is None


def test_secrets_are_whsec_and_32_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    assert new_secret() != secret


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.8",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",
        "::1",
        "fd00:ec2::254",
        "fe80::1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_forbidden_addresses(address: str) -> None:
    assert forbidden_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden_address(address)


async def fake_resolver(host: str, port: int) -> list[str]:
    table = {
        "partner.example": ["93.184.216.34"],
        "rebound.example": ["93.184.216.34", "10.0.0.5"],
    }
    if host not in table:
        raise OSError("no such host")
    return table[host]


@pytest.mark.parametrize(
    ("url", "env", "reason"),
    [
        ("http://partner.example/hook", "prod", "https"),
        ("https://rebound.example/hook", "prod", "private"),
        ("https://nowhere.example/hook", "prod", "does not resolve"),
        ("https://169.254.169.254/", "prod", "private"),
        ("https://metadata.google.internal/", "prod", "metadata"),
        ("https://user:pw@partner.example/", "prod", "credentials"),
        ("https://partner.example/#frag", "prod", "fragment"),
        ("file:///etc/passwd", "dev", "http(s)"),
        ("https:///nohost", "prod", "no host"),
        ("https://partner.example:99999/", "prod", "not a valid URL"),
    ],
)
async def test_refused_urls(url: str, env: str, reason: str) -> None:
    with pytest.raises(WebhookUrlRefused) as caught:
        await check_webhook_url(url, env=env, allow_private=False, resolver=fake_resolver)
    assert reason in caught.value.detail
    assert url not in caught.value.detail


async def test_allowed_urls() -> None:
    await check_webhook_url(
        "https://partner.example/hook", env="prod", allow_private=False, resolver=fake_resolver
    )
    await check_webhook_url(
        "http://partner.example/hook", env="dev", allow_private=False, resolver=fake_resolver
    )
    # Tests and the demo allow loopback targets; https is still required in prod.
    await check_webhook_url("http://127.0.0.1:8080/x", env="test", allow_private=True)
    with pytest.raises(WebhookUrlRefused):
        await check_webhook_url("http://127.0.0.1:8080/x", env="prod", allow_private=True)
