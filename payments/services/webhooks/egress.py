"""The SSRF guard: where Surge may send a merchant's webhooks.

Endpoint URLs are chosen by merchants, so before registration and before every
delivery the host is resolved and every address checked. Loopback, private,
link-local, multicast, reserved and unspecified addresses and the cloud
metadata services are refused, in IPv4, IPv6 and the IPv6 forms that carry an
IPv4 address (IPv4-mapped, 6to4, NAT64, Teredo). ``WEBHOOK_ALLOWED_NETWORKS``
(CIDRs) lets some through, e.g. loopback for tests and local development;
metadata addresses stay refused whatever it says.

A delivery connects to the address that was checked (``Target``): the URL's
host is replaced by that address, the original ``Host`` header is sent, and
for https the TLS server name and certificate check use the hostname. A DNS
answer that changes between the check and the connection (DNS rebinding)
therefore cannot redirect the request.
"""

import ipaddress
import socket
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata and platform services reachable from cloud guests: AWS,
# GCP, Azure, OpenStack (169.254.169.254), AWS ECS task metadata, AWS IPv6
# IMDS, Alibaba Cloud, Azure's wire server, Oracle Cloud.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
        "192.0.0.192",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT


class EgressRefused(Exception):
    """The URL's host may not be sent to. ``reason`` says why without the
    host ("resolves to 10.0.0.5, a private address"); ``str()`` names it."""

    def __init__(self, host: str, reason: str):
        super().__init__(f"{host} {reason}")
        self.host = host
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: ``url`` has the checked address in place of the
    host; ``host_header`` and ``server_name`` carry the original name."""

    url: str
    address: IPAddress
    host_header: str
    server_name: str | None  # https only: SNI and the certificate's name


def refusal(address: IPAddress) -> str | None:
    """The class of address that makes ``address`` refused, or None if allowed."""
    embedded = _embedded_ipv4(address)
    if address in METADATA_ADDRESSES or embedded in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if any(address in net for net in allowed_networks()):
        return None
    if embedded is not None:
        if any(embedded in net for net in allowed_networks()):
            return None
        return refusal(embedded)
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or address in _SHARED:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms
    that reach an IPv4 host (mapped ``::ffff:a.b.c.d``, 6to4, NAT64, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def allowed_networks() -> tuple[IPNetwork, ...]:
    return _parse_networks(tuple(settings.WEBHOOK_ALLOWED_NETWORKS))


@cache
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal is itself)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise EgressRefused(host, "does not resolve") from exc
    # An IPv6 answer may carry a zone ("fe80::1%eth0"); the zone does not
    # change which class the address is in.
    return list(
        dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
    )


def check(url: str) -> Target:
    """Resolve the URL's host, refuse it if any address is refused, and return
    the target pinned to the first address.

    Every address is checked, not only the one used: a host that answers with
    a public and a private address is refused (it could be either next time).
    """
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise EgressRefused("the URL", "has no host")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise EgressRefused(host, "is not a valid host name") from exc
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    addresses = resolve(ascii_host, port)
    if not addresses:
        raise EgressRefused(host, "does not resolve")
    literal = len(addresses) == 1 and addresses[0] == _literal(ascii_host)
    for address in addresses:
        why = refusal(address)
        if why is not None:
            raise EgressRefused(
                host, f"is {why}" if literal else f"resolves to {address}, {why}"
            )
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = f"{ascii_host}:{parts.port}" if parts.port else ascii_host
    if ":" in ascii_host:  # an IPv6 literal keeps its brackets in Host
        host_header = parts.netloc.rsplit("@", 1)[-1]
    return Target(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        address=address,
        host_header=host_header,
        server_name=ascii_host if https else None,
    )
