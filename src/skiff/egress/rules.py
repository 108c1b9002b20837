"""spec.egress as a policy: which host:port an app may connect to.

An entry is a host pattern with an optional ``:port`` (no port = any port):

    api.example.com        that name exactly (case-insensitive, trailing dot ignored)
    *.internal.corp:443    any subdomain of internal.corp, never internal.corp itself
    10.0.0.5:5432          that address (IPv6 as ``[fd00::5]:5432``)
    *                      any host

Names never unlock private addresses (see ``addresses``): a destination on
loopback, a private network, link-local or metadata ranges is reachable only
through an entry that names the address itself. Everything here is pure, so
the table of cases is tested without a socket.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .addresses import is_private, normalize_ip, parse_ip
from .errors import InvalidEgressRule

RuleKind = Literal["any", "wildcard", "name", "ip"]

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_EXPECTED = ('a host pattern with an optional port, like "api.example.com", '
             '"*.internal.corp:443", "10.0.0.5:5432" or "*"')


def normalize_host(host: str) -> str:
    """The form rules compare: lowercase, no trailing dot, IDNA for non-ASCII, canonical IPs.

    Raises ValueError for anything that is neither a DNS name nor an IP address.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ip = parse_ip(text)
    if ip is not None:
        return ip.compressed
    if text.endswith("."):  # the DNS root: "example.com." is "example.com"
        text = text[:-1]
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"not a host name: {host!r}") from exc
    text = text.lower()
    if len(text) > 253 or not _NAME.match(text):
        raise ValueError(f"not a host name: {host!r}")
    if text.rsplit(".", 1)[-1].isdigit():
        # "127.1" or "10.1.2" are IP addresses to inet_aton, not names; refuse the ambiguity.
        raise ValueError(f"not a host name or a complete IP address: {host!r}")
    return text


def format_target(host: str, port: int) -> str:
    """``host:port`` as an entry spells it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def suggest_rule(host: str, port: int) -> str:
    """The spec.egress entry that allows exactly ``host:port``."""
    try:
        host = normalize_host(host)
    except ValueError:
        host = host.strip().lower()
    return format_target(host, port)


@dataclass(frozen=True, slots=True)
class Rule:
    """One parsed spec.egress entry."""

    entry: str
    kind: RuleKind
    host: str  # "*", the suffix after "*." for wildcards, the name, or the canonical IP
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        """Whether this entry allows ``host`` (already normalized) on ``port``."""
        if self.port is not None and self.port != port:
            return False
        if self.kind == "any":
            return True
        if self.kind == "wildcard":
            return host.endswith("." + self.host)
        return host == self.host

    @property
    def specificity(self) -> tuple[int, int, bool]:
        """Orders matching rules so a decision names the narrowest one."""
        rank = {"any": 0, "wildcard": 1, "name": 2, "ip": 2}[self.kind]
        return (rank, len(self.host), self.port is not None)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one destination; ``rule`` is the entry that allowed it."""

    allowed: bool
    rule: str | None = None


def parse_rule(entry: str) -> Rule:
    """Parse one entry; ValueError says what is wrong with it."""
    text = entry.strip()
    if not text:
        raise ValueError("empty entry")
    host, port = _split_port(text)
    if host == "*":
        kind: RuleKind = "any"
        canonical = "*"
    elif host.startswith("*."):
        if parse_ip(host[2:]) is not None:
            raise ValueError(f"{host!r} is not *. followed by a domain")
        kind, canonical = "wildcard", normalize_host(host[2:])
    elif parse_ip(host) is not None:
        kind, canonical = "ip", normalize_ip(host)
    else:
        kind, canonical = "name", normalize_host(host)
    shown = "*" if kind == "any" else ("*." + canonical if kind == "wildcard" else canonical)
    written = shown if port is None else format_target(shown, port)
    return Rule(entry=written, kind=kind, host=canonical, port=port)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError("unclosed [")
        host, rest = text[: close + 1], text[close + 1:]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError("expected :port after ]")
        return host, _port(rest[1:])
    if text.count(":") > 1:  # a bare IPv6 address, which cannot carry a port
        return text, None
    host, sep, port = text.partition(":")
    return host, (_port(port) if sep else None)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is not 1-65535")
    return int(text)


class EgressPolicy:
    """An app's egress allow-list, parsed once per revision and immutable."""

    __slots__ = ("rules",)

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        """Parse spec.egress; one InvalidEgressRule lists every bad entry."""
        rules: list[Rule] = []
        problems: list[str] = []
        for index, entry in enumerate(entries):
            try:
                rules.append(parse_rule(entry))
            except ValueError:
                problems.append(f"spec.egress[{index}]: expected {_EXPECTED}, got \"{entry}\"")
        if problems:
            raise InvalidEgressRule("\n".join(problems), problems=problems)
        return cls(rules)

    @property
    def entries(self) -> tuple[str, ...]:
        return tuple(rule.entry for rule in self.rules)

    def check(self, host: str, port: int) -> Decision:
        """May the app connect to ``host:port``? Names are checked before they are resolved."""
        try:
            host = normalize_host(host)
        except ValueError:
            return Decision(False)
        best: Rule | None = None
        for rule in self.rules:
            if rule.matches(host, port) and (best is None or rule.specificity > best.specificity):
                best = rule
        return Decision(best is not None, best.entry if best else None)

    def check_address(self, address: str, port: int) -> Decision:
        """May the app reach this resolved address? Public ones yes; private ones only by name."""
        canonical = normalize_ip(address)
        for rule in sorted(self.rules, key=lambda r: r.port is None):
            if rule.kind == "ip" and rule.matches(canonical, port):
                return Decision(True, rule.entry)
        return Decision(not is_private(canonical))

    def select_addresses(self, port: int, addresses: Iterable[str]) -> list[str]:
        """The resolved addresses the proxy may connect to, in resolver order, deduplicated."""
        chosen: list[str] = []
        for address in addresses:
            canonical = normalize_ip(address)
            if canonical not in chosen and self.check_address(canonical, port).allowed:
                chosen.append(canonical)
        return chosen

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EgressPolicy) and self.rules == other.rules

    def __hash__(self) -> int:
        return hash(self.rules)

    def __repr__(self) -> str:
        return f"EgressPolicy({list(self.entries)!r})"
