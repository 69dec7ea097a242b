"""The SSRF guard, table-driven: 70 webhook URLs, each refused or allowed, with a reason.

Numeric hosts go through the real resolver with AI_NUMERICHOST (inet_aton forms such as
``2130706433`` or ``0x7f.1`` become addresses without DNS); names come from a fixed table.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from app.errors import WebhookUrlRefused
from app.webhooks.url_guard import check_webhook_url, forbidden_address

NAMES = {
    "partner.example": ["93.184.216.34"],
    "v6.partner.example": ["2606:2800:220:1:248:1893:25c8:1946"],
    "rebound.example": ["93.184.216.34", "10.0.0.5"],
    "nat64-metadata.example": ["64:ff9b::a9fe:a9fe"],
    "sixtofour-loopback.example": ["2002:7f00:1::"],
    "mapped-private.example": ["::ffff:192.168.0.1"],
    "nat64-public.example": ["64:ff9b::5db8:d822"],
}


async def resolver(host: str, port: int) -> list[str]:
    if host in NAMES:
        return NAMES[host]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
    )
    return sorted({str(info[4][0]) for info in infos})


PRIVATE = "private"

REFUSED: list[tuple[str, str]] = [
    # IPv4 literals
    ("http://127.0.0.1/hook", PRIVATE),
    ("http://127.1.2.3/hook", PRIVATE),
    ("http://10.0.0.1/hook", PRIVATE),
    ("http://172.16.0.1/hook", PRIVATE),
    ("http://172.31.255.255/hook", PRIVATE),
    ("http://192.168.1.1/hook", PRIVATE),
    ("http://169.254.169.254/latest/meta-data/", PRIVATE),
    ("http://169.254.170.2/v2/credentials", PRIVATE),
    ("http://100.100.100.200/", PRIVATE),
    ("http://100.64.0.1/", PRIVATE),  # carrier-grade NAT
    ("http://0.0.0.0/", PRIVATE),
    ("http://192.0.0.1/", PRIVATE),
    ("http://192.0.2.1/", PRIVATE),  # documentation
    ("http://198.18.0.1/", PRIVATE),  # benchmarking
    ("http://224.0.0.1/", PRIVATE),  # multicast
    ("http://240.0.0.1/", PRIVATE),  # reserved
    ("http://255.255.255.255/", PRIVATE),
    # IPv4 written the ways inet_aton reads it
    ("http://2130706433/", PRIVATE),
    ("http://0x7f000001/", PRIVATE),
    ("http://017700000001/", PRIVATE),
    ("http://127.1/", PRIVATE),
    ("http://0x7f.0.0.1/", PRIVATE),
    ("http://0177.0.0.1/", PRIVATE),
    ("http://0xa9fea9fe/", PRIVATE),
    ("http://10.1/", PRIVATE),
    # IPv6 literals
    ("http://[::1]/", PRIVATE),
    ("http://[::]/", PRIVATE),
    ("http://[fe80::1]/", PRIVATE),
    ("http://[fe80::1%25eth0]/", PRIVATE),
    ("http://[fc00::1]/", PRIVATE),
    ("http://[fd00:ec2::254]/", PRIVATE),
    ("http://[ff02::1]/", PRIVATE),
    ("http://[2001:db8::1]/", PRIVATE),
    ("http://[100::1]/", PRIVATE),  # discard-only
    # IPv6 forms carrying a private IPv4
    ("http://[::ffff:127.0.0.1]/", PRIVATE),
    ("http://[::ffff:7f00:1]/", PRIVATE),
    ("http://[::ffff:a9fe:a9fe]/", PRIVATE),
    ("http://[::ffff:0:a00:1]/", PRIVATE),  # IPv4-translated
    ("http://[::ffff:0:7f00:1]/", PRIVATE),
    ("http://[::127.0.0.1]/", PRIVATE),  # IPv4-compatible
    ("http://[::a00:1]/", PRIVATE),
    ("http://[::a9fe:a9fe]/", PRIVATE),
    ("http://[64:ff9b::a9fe:a9fe]/", PRIVATE),  # NAT64 → 169.254.169.254
    ("http://[64:ff9b::a00:1]/", PRIVATE),  # NAT64 → 10.0.0.1
    ("http://[64:ff9b::127.0.0.1]/", PRIVATE),
    ("http://[64:ff9b::c0a8:101]/", PRIVATE),
    ("http://[64:ff9b:1::a00:1]/", PRIVATE),  # local-use NAT64
    ("http://[64:ff9b:1:5db8:d8:2200::]/", PRIVATE),
    ("http://[2002:7f00:1::]/", PRIVATE),  # 6to4 → 127.0.0.1
    ("http://[2002:a00:1::1]/", PRIVATE),
    ("http://[2002:a9fe:a9fe::]/", PRIVATE),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", PRIVATE),  # Teredo
    # names
    ("https://rebound.example/hook", PRIVATE),
    ("https://nat64-metadata.example/hook", PRIVATE),
    ("https://sixtofour-loopback.example/hook", PRIVATE),
    ("https://mapped-private.example/hook", PRIVATE),
    ("https://nowhere.example/hook", "does not resolve"),
    ("https://metadata.google.internal/", "metadata"),
    ("https://metadata/", "metadata"),
    ("https://anything.internal/", "metadata"),
    ("https://instance-data./", "metadata"),
    # not URLs a processor may have
    ("ftp://partner.example/", "http(s)"),
    ("file:///etc/passwd", "http(s)"),
    ("gopher://127.0.0.1:70/", "http(s)"),
    ("https://user:pw@partner.example/", "credentials"),
    ("https://partner.example/#frag", "fragment"),
    ("https:///nohost", "no host"),
    ("https://partner.example:99999/", "not a valid URL"),
]

ALLOWED = [
    "https://partner.example/hook",
    "https://v6.partner.example/hook",
    "https://93.184.216.34/hook",
    "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    "https://[::ffff:93.184.216.34]/hook",
    "https://[64:ff9b::5db8:d822]/hook",  # NAT64 to a public address
    "https://nat64-public.example/hook",
    "https://[2002:5db8:d822::1]/hook",  # 6to4 of a public address
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_refused(url: str, reason: str) -> None:
    with pytest.raises(WebhookUrlRefused) as caught:
        await check_webhook_url(url, env="dev", allow_private=False, resolver=resolver)
    assert reason in caught.value.detail
    assert url not in caught.value.detail


@pytest.mark.parametrize("url", ALLOWED)
async def test_allowed(url: str) -> None:
    await check_webhook_url(url, env="prod", allow_private=False, resolver=resolver)


def test_the_table_is_the_size_the_issue_names() -> None:
    assert len(REFUSED) + len(ALLOWED) >= 70


@pytest.mark.parametrize(
    "address", ["64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "2002:7f00:1::", "::127.0.0.1"]
)
def test_embedded_ipv4_is_checked_as_ipv4(address: str) -> None:
    assert forbidden_address(address)
