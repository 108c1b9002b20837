"""Destinations no manifest can grant: the operator's side of egress.

spec.egress is written by the app's author, so it cannot be what keeps an app
away from the machine it runs on. Whatever a manifest says, the proxy never
connects to

- loopback (127.0.0.0/8, ::1): the gateway, its admin API, and every service
  the host binds to localhost only;
- link-local (169.254.0.0/16, fe80::/10) and cloud metadata (169.254.169.254,
  fd00:ec2::254): instance credentials;
- unspecified addresses (0.0.0.0/8, ::), which Linux connects to the local host;
- the platform's own ports on this host, by any of its addresses;

also when a name resolves there (the resolved address is checked, never the
name) and also through IPv4 addresses embedded in IPv6 ones. The operator lifts
a ban with an allowance (``SKIFF_EGRESS_ALLOW``): a list of addresses or CIDR
blocks, each with an optional ``:port``, that manifests may then name. A
platform port needs an allowance naming that port: allowing ``127.0.0.0/8``
does not open the admin API by accident.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .addresses import IPAddress, _embedded_v4, parse_ip
from .rules import Rule, _port, format_target

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# most specific first: 169.254.169.254 is link-local too, but "metadata" says more
FORBIDDEN: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), label) for net, label in (
        ("169.254.169.254/32", "the cloud metadata address"),
        ("fd00:ec2::254/128", "the cloud metadata address"),
        ("127.0.0.0/8", "a loopback address"),
        ("::1/128", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("fe80::/10", "a link-local address"),
        ("0.0.0.0/8", "an unspecified address"),
        ("::/128", "an unspecified address"),
    ))

ALLOW_VARIABLE = "SKIFF_EGRESS_ALLOW"


def forbidden_class(address: IPAddress | str) -> str | None:
    """What kind of off-limits address this is ("a loopback address"), or None."""
    parsed = parse_ip(address) if isinstance(address, str) else address
    if parsed is None:
        raise ValueError(f"not an IP address: {address!r}")
    candidates = [parsed]
    inner = _embedded_v4(parsed)
    if inner is not None:
        candidates.append(inner)
    for candidate in candidates:
        for net, label in FORBIDDEN:
            if candidate.version == net.version and candidate in net:
                return label
    return None


@dataclass(frozen=True, slots=True)
class Allowance:
    """One operator entry: addresses (a CIDR block) and an optional port."""

    entry: str
    network: Network
    port: int | None

    def covers(self, address: IPAddress, port: int | None, *, exact_port: bool = False) -> bool:
        """Whether this entry lifts the ban on ``address:port`` (``port`` None: every port).
        With ``exact_port`` the entry must name the port itself."""
        if address.version != self.network.version or address not in self.network:
            return False
        if self.port is None:
            return not exact_port
        return port == self.port


def parse_allowance(entry: str) -> Allowance:
    """``127.0.0.1:5432``, ``10.1.0.0/16``, ``[::1]:8080``, ``fe80::/10``; ValueError if not."""
    text = entry.strip()
    port: int | None = None
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed:
            raise ValueError(f"unclosed [ in {entry!r}")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected :port after ] in {entry!r}")
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text)
    else:
        host = text
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not an address or CIDR block with an optional port "
                         "(the proxy checks addresses, so write the address, not a name)"
                         ) from None
    return Allowance(text, network, port)


class Guard:
    """The platform-wide ban list and the operator's allowance. ``platform_ports`` may be
    filled in later (the gateway knows its port once it has bound it)."""

    def __init__(self, allow: Iterable[str] = (), platform_ports: Iterable[int] = ()) -> None:
        problems, allowances = [], []
        for entry in allow:
            if not entry.strip():
                continue
            try:
                allowances.append(parse_allowance(entry))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError(f"{ALLOW_VARIABLE}: " + "; ".join(problems))
        self.allow: tuple[Allowance, ...] = tuple(allowances)
        self.platform_ports: set[int] = set(platform_ports)

    def _allowed(self, address: IPAddress, port: int | None, *, exact_port: bool) -> bool:
        return any(a.covers(address, port, exact_port=exact_port) for a in self.allow)

    def check(self, address: str, port: int, *, local: bool = False) -> str | None:
        """Why ``address:port`` is off limits, or None if the proxy may connect to it.
        ``local``: the connection turned out to land on this host (see the proxy)."""
        parsed = parse_ip(address)
        if parsed is None:
            raise ValueError(f"not an IP address: {address!r}")
        label = forbidden_class(parsed)
        if label is not None and not self._allowed(parsed, port, exact_port=False):
            return label
        if (label is not None or local) and port in self.platform_ports \
                and not self._allowed(parsed, port, exact_port=True):
            return f"the platform's own port {port}"
        return None

    def check_rule(self, rule: Rule) -> str | None:
        """At deploy: why this spec.egress entry names what apps may not reach, or None.
        Only entries naming an address can (names and wildcards never unlock these
        addresses, see ``EgressPolicy.check_address``); such an entry must lie wholly
        inside the allowance."""
        if rule.kind != "ip":
            return None
        address = ipaddress.ip_address(rule.host)
        label = forbidden_class(address)
        if label is None:
            return None
        if not self._allowed(address, rule.port, exact_port=False):
            return label
        if rule.port is not None and rule.port in self.platform_ports \
                and not self._allowed(address, rule.port, exact_port=True):
            return f"the platform's own port {rule.port}"
        return None

    def hint(self, address: str, port: int) -> str:
        """The allowance entry an operator would add."""
        return f"{ALLOW_VARIABLE}={format_target(address, port)}"

    def __repr__(self) -> str:
        return f"Guard(allow={[a.entry for a in self.allow]!r}, ports={sorted(self.platform_ports)})"
