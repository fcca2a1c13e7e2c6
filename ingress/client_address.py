"""The client's address, as far as it can be known behind reverse proxies.

A proxy (the Kubernetes ingress controller, a load balancer) connects to the ingress
on the client's behalf: the TCP peer is the proxy, and the client's address comes in
X-Forwarded-For, a header that anybody can also write. Only what our own proxies
appended can be believed: each appends the address it received the request from at
the right end. So an untrusted peer is itself the client (its X-Forwarded-For is
ignored), and from a trusted peer the header is walked from the right to the first
hop that is not one of our proxies: everything left of that hop was written by the
client and may be forged.

Rate limits and the promo-abuse fraud rule count by this address; uvicorn's own
proxy-header handling is off (ops.cli), so this module is the one place that decides.
"""

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from services.settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_hop(raw: str) -> Address | None:
    """One X-Forwarded-For entry as an address, or None when it is not one.

    Accepts what proxies write: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, and the
    same with a port (`1.2.3.4:80`, `[2001:db8::1]:443`). An IPv4-mapped IPv6
    address counts as its IPv4 address, so a dual-stack listener matches IPv4 CIDRs.
    """
    text = raw.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]
) -> str | None:
    """The client of a request whose TCP peer is `peer`.

    An untrusted (or unparsable) peer is the client. From a trusted peer: the
    right-most X-Forwarded-For hop that is not a trusted proxy; when every hop is
    trusted, the left-most. A malformed hop stops the walk at the last trusted hop to
    its right: nothing left of garbage can be attributed, and blaming our own proxy
    puts such requests in one bucket rather than letting them pick their own.
    """
    peer_address = parse_hop(peer) if peer else None
    if peer_address is None or not _trusted(peer_address, trusted):
        return str(peer_address) if peer_address is not None else peer
    nearest = peer_address
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    for raw in reversed(hops):
        hop = parse_hop(raw)
        if hop is None:
            break
        nearest = hop
        if not _trusted(hop, trusted):
            break
    return str(nearest)


def forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Every X-Forwarded-For line of an ASGI header list, joined as one list (RFC 9110)."""
    lines = [value.decode("latin-1") for name, value in headers if name.lower() == b"x-forwarded-for"]
    return ",".join(lines) if lines else None


def client_address_of(scope: Any, trusted: Sequence[Network]) -> str | None:
    """`client_address` of an ASGI scope (HTTP request or WebSocket)."""
    client = scope.get("client")
    peer = client[0] if client else None
    return client_address(peer, forwarded_for(scope.get("headers") or []), trusted)
