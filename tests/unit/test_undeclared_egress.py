"""The inventory's hosts no app declares are judged by the egress proxy's own rules
(EgressPolicy), so a wildcard, a port, an IPv6 literal or a trailing dot means there
exactly what it means to the proxy."""

from __future__ import annotations

from skiff.egress import EgressPolicy
from skiff.platform.inventory import egress_host, undeclared_egress

LINES = {
    "a": [(10.0, "CONNECT api.stripe.com:443 DENIED (not_allowed) rule=- up=0B down=0B 0.1ms"),
          (11.0, "CONNECT api.stripe.com:443 DENIED (not_allowed) rule=- up=0B down=0B 0.1ms"),
          (12.0, "CONNECT pypi.org:443 allowed rule=pypi.org up=1B down=2B 3.0ms"),
          (13.0, "connection refused, DENIED (too_many_connections): cap 64"),
          (13.5, "CONNECT [fd00::5]:5432 DENIED (not_allowed) rule=- up=0B down=0B 1ms")],
    "b": [(14.0, "GET files.internal.corp:80 allowed rule=- up=1B down=1B 1.0ms"),
          (14.5, "CONNECT x.example.com:443 DENIED (not_allowed) rule=- up=0B down=0B 1ms"),
          (14.7, "CONNECT x.example.com:80 DENIED (not_allowed) rule=- up=0B down=0B 1ms"),
          (15.0, "CONNECT api.stripe.com:443 DENIED (not_allowed) rule=- up=0B down=0B 1ms")],
}


def test_hosts_no_app_declares_are_counted_per_host_and_port() -> None:
    policies = [EgressPolicy.parse(["pypi.org."]), EgressPolicy.parse(["*.example.com:443"])]
    assert undeclared_egress(LINES, policies) == [
        {"host": "api.stripe.com", "port": 443, "apps": ["a", "b"], "attempts": 3,
         "allowed": 0, "last": 15.0},
        {"host": "fd00::5", "port": 5432, "apps": ["a"], "attempts": 1, "allowed": 0,
         "last": 13.5},
        {"host": "files.internal.corp", "port": 80, "apps": ["b"], "attempts": 1,
         "allowed": 1, "last": 14.0},
        {"host": "x.example.com", "port": 80, "apps": ["b"], "attempts": 1, "allowed": 0,
         "last": 14.7}]


def test_an_ipv6_entry_declares_its_address() -> None:
    policies = [EgressPolicy.parse(["[fd00::5]:5432"])]
    hosts = {(h["host"], h["port"]) for h in undeclared_egress(LINES, policies)}
    assert ("fd00::5", 5432) not in hosts and ("api.stripe.com", 443) in hosts


def test_lines_that_name_no_destination_are_ignored() -> None:
    assert egress_host("connection refused, DENIED (too_many_connections): cap 64") is None
    assert egress_host("CONNECT API.Stripe.com:443 DENIED (x)") == ("api.stripe.com", 443, False)
