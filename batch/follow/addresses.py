"""Which network addresses a server's URL may send this tool, or a report's reader, to.

A hostile or broken API can put any address in a video's URL. A download connects only to
public unicast addresses (`refusal`); a report's thumbnail is fetched by the reader's browser
each time the page opens, so one on a loopback or private address (a router's admin page, a
service on the reader's machine) is never shown (`literal_address` finds such an address written
in the URL itself, in any form a browser reads: `127.0.0.1`, `2130706433`, `0x7f.1`, `[::1]`).
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d (deprecated, still routed by some)


def refusal(address: IPAddress) -> str | None:
    """Why no request may go to `address` (None: it is a public unicast address).

    An IPv6 address that carries an IPv4 one (mapped, compatible, 6to4, or the NAT64
    prefixes of RFC 6052 and 8215) is judged by the IPv4 address it reaches.
    """
    if isinstance(address, ipaddress.IPv6Address):
        address = _embedded_ipv4(address) or address
    for kind, applies in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("unspecified", address.is_unspecified),
    ):
        if applies:
            return kind
    return None if address.is_global else "reserved"


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names by itself (None for a name): an IPv6 literal, or IPv4 in
    any form `inet_aton` (and so a browser) reads, decimal, hex or octal parts included."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64) or (
        address in _COMPATIBLE and int(address) > 1  # not :: nor ::1
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
