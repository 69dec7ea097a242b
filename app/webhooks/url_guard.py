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


# IPv6 forms that carry an IPv4 address a translator or tunnel would reach.
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
# RFC 8215 local-use NAT64: the embedded address sits where the operator's prefix length puts
# it, so it cannot be unwrapped reliably; it is never a partner's public address.
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 (deprecated)
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 SIIT


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: mapped, translated, compatible, NAT64, 6to4,
    Teredo (server and client). Empty for a plain IPv6 address."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in IPV4_TRANSLATED or ip in IPV4_COMPATIBLE or ip in NAT64_WELL_KNOWN:
        return [low32]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


def _forbidden_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        ip in METADATA_ADDRESSES
        or not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def metadata_address(address: str) -> bool:
    """True for a cloud metadata endpoint, also when an IPv6 form carries it (mapped, NAT64…)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates.extend(embedded_ipv4(ip))
    return any(candidate in METADATA_ADDRESSES for candidate in candidates)


def forbidden_address(address: str) -> bool:
    """True for private, loopback, link-local, reserved, multicast and metadata addresses,
    including IPv6 forms that wrap such an IPv4 address (each wrapped one is checked as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return True
        inner = embedded_ipv4(ip)
        if inner:
            return any(_forbidden_ip(v4) for v4 in inner)
    return _forbidden_ip(ip)


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
