"""The platform's ban list and the operator's allowance, as pure tables."""

from __future__ import annotations

import pytest

from skiff.egress import Guard, forbidden_class, parse_allowance, parse_rule


@pytest.mark.parametrize(("address", "label"), [
    ("127.0.0.1", "a loopback address"),
    ("127.255.0.9", "a loopback address"),
    ("::1", "a loopback address"),
    ("::ffff:127.0.0.1", "a loopback address"),     # IPv4-mapped
    ("64:ff9b::7f00:1", "a loopback address"),      # NAT64
    ("2002:7f00:1::", "a loopback address"),        # 6to4
    ("169.254.169.254", "the cloud metadata address"),
    ("fd00:ec2::254", "the cloud metadata address"),
    ("::ffff:169.254.169.254", "the cloud metadata address"),
    ("169.254.3.4", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("0.0.0.0", "an unspecified address"),
    ("0.1.2.3", "an unspecified address"),
    ("::", "an unspecified address"),
    ("10.0.0.5", None),           # private, but a manifest may name it
    ("fd00::5", None),
    ("93.184.216.34", None),
    ("2606:2800:220:1::", None),
])
def test_forbidden_classes(address, label):
    """Each banned class by its address, also hidden inside IPv6; other addresses pass."""
    assert forbidden_class(address) == label


@pytest.mark.parametrize(("entry", "network", "port"), [
    ("127.0.0.1:5432", "127.0.0.1/32", 5432),
    ("10.1.0.0/16", "10.1.0.0/16", None),
    ("127.0.0.1", "127.0.0.1/32", None),
    ("[::1]:8080", "::1/128", 8080),
    ("fe80::/10", "fe80::/10", None),
    ("::1", "::1/128", None),
    ("127.0.0.0/8:6379", "127.0.0.0/8", 6379),
])
def test_allowance_entries(entry, network, port):
    allowance = parse_allowance(entry)
    assert (str(allowance.network), allowance.port) == (network, port)


@pytest.mark.parametrize("entry", ["localhost:5432", "db.internal", "127.0.0.1:99999",
                                   "[::1", "300.1.1.1", "127.0.0.1:x"])
def test_bad_allowance_entries_are_refused(entry):
    with pytest.raises(ValueError):
        Guard(allow=[entry])


def test_allowance_lifts_a_ban_for_what_it_names_only():
    guard = Guard(allow=["127.0.0.1:5432", "169.254.0.0/16"])
    assert guard.check("127.0.0.1", 5432) is None
    assert guard.check("127.0.0.1", 5433) == "a loopback address"
    assert guard.check("127.0.0.2", 5432) == "a loopback address"
    assert guard.check("169.254.169.254", 80) is None
    assert guard.check("::1", 5432) == "a loopback address"
    assert guard.check("93.184.216.34", 443) is None


def test_platform_ports_need_an_allowance_naming_the_port():
    """Allowing all of loopback does not open the gateway's port; naming it does."""
    guard = Guard(allow=["127.0.0.0/8"], platform_ports=[8080])
    assert guard.check("127.0.0.1", 5432) is None
    assert guard.check("127.0.0.1", 8080) == "the platform's own port 8080"
    assert guard.check("10.0.0.5", 8080) is None  # somewhere else
    assert guard.check("10.0.0.5", 8080, local=True) == "the platform's own port 8080"
    assert Guard(allow=["127.0.0.1:8080"], platform_ports=[8080]).check("127.0.0.1", 8080) is None


@pytest.mark.parametrize(("entry", "allow", "problem"), [
    ("127.0.0.1:5432", [], "a loopback address"),
    ("127.0.0.1:5432", ["127.0.0.1:5432"], None),
    ("127.0.0.1", ["127.0.0.1:5432"], "a loopback address"),  # wider than the allowance
    ("127.0.0.1", ["127.0.0.0/8"], None),
    ("127.0.0.1:8080", ["127.0.0.0/8"], "the platform's own port 8080"),
    ("169.254.169.254", [], "the cloud metadata address"),
    ("0.0.0.0:80", [], "an unspecified address"),
    ("[fe80::1]:80", [], "a link-local address"),
    ("10.0.0.5:5432", [], None),
    ("localhost", [], None),  # a name: checked where it resolves, by the proxy
    ("*", [], None),
])
def test_deploy_check_of_spec_egress_entries(entry, allow, problem):
    assert Guard(allow=allow, platform_ports=[8080]).check_rule(parse_rule(entry)) == problem
