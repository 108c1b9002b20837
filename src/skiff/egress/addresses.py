"""Which IP addresses an app may never reach through a host name.

A name an app is allowed to use can be made to resolve anywhere (DNS
rebinding): ``api.example.com`` → ``169.254.169.254`` would hand the cloud
metadata service, the platform's own admin port on loopback, or the office
network to the app. So the proxy resolves names itself, connects to exactly
the address it checked, and treats every address in these ranges as off limits
unless spec.egress names the address itself.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PRIVATE_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",        # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",       # RFC 1918
        "100.64.0.0/10",    # carrier-grade NAT; some clouds put metadata here
        "127.0.0.0/8",      # loopback: the platform itself
        "169.254.0.0/16",   # link-local, including cloud metadata 169.254.169.254
        "172.16.0.0/12",    # RFC 1918
        "192.0.0.0/24",     # IETF protocol assignments
        "192.168.0.0/16",   # RFC 1918
        "198.18.0.0/15",    # benchmarking
        "224.0.0.0/4",      # multicast
        "240.0.0.0/4",      # reserved, and 255.255.255.255 broadcast
        "::/128",           # unspecified
        "::1/128",          # loopback
        "fc00::/7",         # unique local, including fd00:ec2::254 metadata
        "fe80::/10",        # link-local
        "ff00::/8",         # multicast
    )
)


def parse_ip(text: str) -> IPAddress | None:
    """The address ``text`` spells (``[v6]`` brackets allowed), or None for a name."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv6 one (mapped, NAT64, 6to4), which is what is reached."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_private(address: IPAddress | str) -> bool:
    """True for loopback, private, link-local, metadata, multicast and unspecified addresses."""
    if isinstance(address, str):
        parsed = parse_ip(address)
        if parsed is None:
            raise ValueError(f"not an IP address: {address!r}")
        address = parsed
    inner = _embedded_v4(address)
    if inner is not None:
        address = inner
    return any(address.version == net.version and address in net for net in PRIVATE_NETWORKS)


def normalize_ip(address: IPAddress | str) -> str:
    """The canonical text of an address: what rules and events compare and show."""
    parsed = parse_ip(address) if isinstance(address, str) else address
    if parsed is None:
        raise ValueError(f"not an IP address: {address!r}")
    return parsed.compressed
