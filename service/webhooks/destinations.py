"""Where a webhook may be delivered: never into the operator's own network.

An endpoint's URL must be https, and every address its host resolves to must be a public one (not
private, loopback, link-local, shared, multicast or reserved), unless the server runs with
`OPENTUNE_WEBHOOKS_ALLOW_HTTP=true` (local use: http and any address). The check runs when an
endpoint is saved and again at every delivery, on the addresses the delivery then connects to: the
connection goes to the checked address itself (the host name kept for the Host header and TLS), so a
DNS answer that changes between the check and the connection (rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from service.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(Exception):
    """A delivery's host resolves to an address it may not reach (or does not resolve)."""


@dataclass(frozen=True)
class Destination:
    url: str  # with the checked address in place of the host name
    host_header: str
    tls_name: str | None  # the host name to verify the certificate against (https)


def check_url(url: str, allow_local: bool) -> str:
    """The URL if an endpoint may have it, else a 400 naming the reason (param `url`)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _bad_url("The URL is not valid.") from None
    schemes = ("https", "http") if allow_local else ("https",)
    if parts.scheme not in schemes:
        raise _bad_url("The URL must use https.")
    if not parts.hostname:
        raise _bad_url("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise _bad_url("The URL may not carry credentials.")
    if port == 0:
        raise _bad_url("The URL's port is not valid.")
    if not allow_local and not all(is_public(address) for address in _addresses_now(parts.hostname)):
        raise _bad_url("The URL's host is not a public address.")
    return url


async def resolve(url: str, allow_local: bool) -> Destination:
    """The address to deliver to: the first its host resolves to, all of them public unless allowed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name; UnicodeError: IDNA
        raise DestinationRefused(f"The host {host} does not resolve.") from exc
    addresses = [_address(info[4][0]) for info in found]
    if not addresses:
        raise DestinationRefused(f"The host {host} does not resolve.")
    if not allow_local and not all(is_public(address) for address in addresses):
        raise DestinationRefused(f"The host {host} resolves to an address that is not a public one.")
    return _pinned(parts, host, port, addresses[0])


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _pinned(parts: SplitResult, host: str, port: int, address: IPAddress) -> Destination:
    shown = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{shown}:{port}"
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    url = parts._replace(netloc=netloc).geturl()
    return Destination(url, host_header, host if parts.scheme == "https" else None)


def _address(text: object) -> IPAddress:
    return ipaddress.ip_address(str(text).split("%", 1)[0])  # without an IPv6 zone ("%eth0")


def _addresses_now(host: str) -> list[IPAddress]:
    """What the host resolves to at this moment: none when it does not resolve (yet), which is
    no reason to refuse an endpoint; every delivery checks again."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return []
    return [_address(info[4][0]) for info in found]


def _bad_url(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="url", code="invalid_url")
