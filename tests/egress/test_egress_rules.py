"""EgressPolicy as a pure table: parse, match, address screening, suggestions."""

from __future__ import annotations

import pytest

from skiff.egress import EgressPolicy, InvalidEgressRule, is_private, parse_rule, suggest_rule

POLICY = EgressPolicy.parse([
    "api.example.com",
    "*.internal.corp:443",
    "10.0.0.5:5432",
    "[fd00::5]:22",
    "db.example.com:5432",
])


@pytest.mark.parametrize(("host", "port", "allowed", "rule"), [
    ("api.example.com", 443, True, "api.example.com"),
    ("api.example.com", 8080, True, "api.example.com"),        # no port in the entry: any port
    ("API.Example.COM.", 443, True, "api.example.com"),        # case and trailing dot ignored
    ("x.api.example.com", 443, False, None),                   # exact names do not cover subdomains
    ("svc.internal.corp", 443, True, "*.internal.corp:443"),
    ("a.b.internal.corp", 443, True, "*.internal.corp:443"),   # any depth of subdomain
    ("internal.corp", 443, False, None),                       # the wildcard is subdomains only
    ("svc.internal.corp", 80, False, None),                    # wrong port
    ("evilinternal.corp", 443, False, None),                   # a suffix, not a substring
    ("10.0.0.5", 5432, True, "10.0.0.5:5432"),
    ("10.0.0.5", 22, False, None),
    ("fd00::5", 22, True, "[fd00::5]:22"),
    ("[fd00:0::5]", 22, True, "[fd00::5]:22"),                 # IPv6 compared canonically
    ("db.example.com", 5432, True, "db.example.com:5432"),
    ("db.example.com", 5433, False, None),
    ("api.stripe.com", 443, False, None),
    ("not a host", 443, False, None),
])
def test_check_table(host: str, port: int, allowed: bool, rule: str | None) -> None:
    """Each entry kind matches exactly what the manifest docs promise."""
    decision = POLICY.check(host, port)
    assert (decision.allowed, decision.rule) == (allowed, rule)


def test_star_allows_any_host_and_port() -> None:
    """"*" allows every name and port; "*:443" every name on 443 only."""
    anything = EgressPolicy.parse(["*"])
    assert anything.check("api.stripe.com", 443).rule == "*"
    assert anything.check("203.0.113.9", 25).allowed
    https_only = EgressPolicy.parse(["*:443"])
    assert https_only.check("api.stripe.com", 443).rule == "*:443"
    assert not https_only.check("api.stripe.com", 80).allowed


def test_most_specific_rule_is_named() -> None:
    """When several entries match, the decision names the narrowest one."""
    policy = EgressPolicy.parse(["*", "*.example.com", "api.example.com", "api.example.com:443"])
    assert policy.check("api.example.com", 443).rule == "api.example.com:443"
    assert policy.check("api.example.com", 80).rule == "api.example.com"
    assert policy.check("www.example.com", 80).rule == "*.example.com"
    assert policy.check("example.org", 80).rule == "*"


def test_empty_policy_denies_everything() -> None:
    """No spec.egress means no egress at all."""
    assert not EgressPolicy.parse([]).check("api.example.com", 443).allowed


def test_entries_are_normalized() -> None:
    """Entries read back in canonical form, which is what suggestions and events show."""
    policy = EgressPolicy.parse(["API.Example.com", "*.Corp.:443", "[FD00:0:0::1]", "fd00::2"])
    assert policy.entries == ("api.example.com", "*.corp:443", "fd00::1", "fd00::2")
    assert parse_rule("10.0.0.5:5432").kind == "ip"
    assert parse_rule("*").kind == "any"


@pytest.mark.parametrize("entry", [
    "https://api.example.com", "api.example.com:0", "api.example.com:65536", "api.*.com",
    "*.", "", "a..b", "127.1", "*.1.2", "[fd00::1", "[fd00::1]x", "host:port", "*.10.0.0.5",
    "-bad.example.com",
])
def test_bad_entries_are_refused(entry: str) -> None:
    """Anything that is not a host pattern with an optional port is a manifest error."""
    with pytest.raises(InvalidEgressRule) as info:
        EgressPolicy.parse(["api.example.com", entry])
    assert info.value.code == "invalid_egress_rule"
    assert info.value.status == 422
    assert info.value.message.startswith("spec.egress[1]: expected a host pattern")


def test_all_bad_entries_are_listed_at_once() -> None:
    """One error lists every problem, so the author fixes them in one go."""
    with pytest.raises(InvalidEgressRule) as info:
        EgressPolicy.parse(["ok.example.com", "bad:0", "worse:99999"])
    assert len(info.value.details["problems"]) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize(("address", "private"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("10.1.2.3", True), ("172.16.0.1", True),
    ("172.31.255.255", True), ("172.32.0.1", False), ("192.168.1.1", True),
    ("169.254.169.254", True), ("0.0.0.0", True), ("100.100.100.200", True),
    ("::1", True), ("fd00:ec2::254", True), ("fe80::1", True), ("::", True),
    ("::ffff:127.0.0.1", True), ("::ffff:10.0.0.1", True), ("64:ff9b::a00:1", True),
    ("224.0.0.1", True), ("255.255.255.255", True),
    ("93.184.216.34", False), ("2606:4700::1111", False), ("8.8.8.8", False),
])
def test_private_ranges(address: str, private: bool) -> None:
    """Loopback, RFC 1918, link-local/metadata and their IPv6 disguises are private."""
    assert is_private(address) is private


def test_names_never_unlock_private_addresses() -> None:
    """A resolved private address passes only through an entry naming that address."""
    policy = EgressPolicy.parse(["api.example.com", "*", "10.0.0.5:5432", "fd00::9"])
    assert policy.select_addresses(443, ["127.0.0.1", "169.254.169.254", "10.0.0.5"]) == []
    assert policy.select_addresses(5432, ["127.0.0.1", "10.0.0.5"]) == ["10.0.0.5"]
    assert policy.select_addresses(22, ["fd00::9", "::ffff:127.0.0.1"]) == ["fd00::9"]
    assert policy.check_address("10.0.0.5", 5432).rule == "10.0.0.5:5432"


def test_public_addresses_pass_in_resolver_order_deduplicated() -> None:
    """Public addresses are allowed once the name was; private ones are dropped from the list."""
    policy = EgressPolicy.parse(["api.example.com"])
    chosen = policy.select_addresses(443, ["10.0.0.1", "93.184.216.34", "93.184.216.34",
                                           "2606:4700:0::1111"])
    assert chosen == ["93.184.216.34", "2606:4700::1111"]


@pytest.mark.parametrize(("host", "port", "rule"), [
    ("api.stripe.com", 443, "api.stripe.com:443"),
    ("API.Stripe.com.", 443, "api.stripe.com:443"),
    ("127.0.0.1", 8080, "127.0.0.1:8080"),
    ("::1", 80, "[::1]:80"),
])
def test_suggest_rule(host: str, port: int, rule: str) -> None:
    """The suggestion is exactly the entry to add, and it parses and allows the target."""
    assert suggest_rule(host, port) == rule
    assert EgressPolicy.parse([rule]).check(host, port).allowed


def test_policy_value_semantics() -> None:
    """Policies compare by their rules and show their entries, so a redeploy can diff them."""
    assert EgressPolicy.parse(["a.example.com"]) == EgressPolicy.parse(["A.example.com"])
    assert repr(EgressPolicy.parse(["a.example.com"])) == "EgressPolicy(['a.example.com'])"
