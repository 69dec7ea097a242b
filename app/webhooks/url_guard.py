"""The SSRF guard on processors' webhook URLs."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from app.errors import WebhookUrlRefused

# --- SSRF guard -----------------------------------------------------------------------------

# Cloud metadata endpoints (most are already link-local or private; listed to be explicit).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(value)
    for value in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
METADATA_HOSTNAMES = frozenset({"metadata", "metadata.google.internal", "instance-data"})

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to (A and AAAA)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def metadata_address(address: str) -> bool:
    """True for a cloud metadata endpoint (also in its IPv4-mapped IPv6 form)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip in METADATA_ADDRESSES


def forbidden_address(address: str) -> bool:
    """True for private, loopback, link-local, reserved, multicast and metadata addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip in METADATA_ADDRESSES or not ip.is_global or ip.is_multicast


async def check_webhook_url(
    url: str, *, env: str, allow_private: bool, resolver: Resolver = resolve_host
) -> None:
    """Refuse URLs a processor must not have: not https in prod, credentials, private targets.

    Called at registration and again before each send (DNS can change between the two).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlRefused("The webhook URL is not a valid URL.") from None
    allowed_schemes = ("https",) if env == "prod" else ("https", "http")
    if parts.scheme not in allowed_schemes:
        raise WebhookUrlRefused(
            "The webhook URL must use https."
            if env == "prod"
            else "The webhook URL must be http(s)."
        )
    host = parts.hostname
    if not host:
        raise WebhookUrlRefused("The webhook URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("The webhook URL must not carry credentials.")
    if parts.fragment:
        raise WebhookUrlRefused("The webhook URL must not have a fragment.")
    if allow_private:
        await _refuse_metadata(host, port or (443 if parts.scheme == "https" else 80), resolver)
        return
    if host.rstrip(".").lower() in METADATA_HOSTNAMES or host.lower().endswith(".internal"):
        raise WebhookUrlRefused("The webhook URL points at a metadata or internal host.")
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await resolver(host, port or (443 if parts.scheme == "https" else 80))
        except OSError:
            raise WebhookUrlRefused("The webhook host does not resolve.") from None
    if not addresses:
        raise WebhookUrlRefused("The webhook host does not resolve.")
    if any(forbidden_address(address) for address in addresses):
        raise WebhookUrlRefused(
            "The webhook host resolves to a private, loopback, link-local or metadata address."
        )


async def _refuse_metadata(host: str, port: int, resolver: Resolver) -> None:
    """Even where private targets are allowed (tests, the demo), never a cloud metadata service:
    it hands out the machine's credentials."""
    if host.rstrip(".").lower() in METADATA_HOSTNAMES:
        raise WebhookUrlRefused("The webhook URL points at a cloud metadata service.")
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await resolver(host, port)
        except OSError:
            return  # private targets allowed: an unresolvable name fails at send time
    if any(metadata_address(address) for address in addresses):
        raise WebhookUrlRefused("The webhook URL points at a cloud metadata service.")
