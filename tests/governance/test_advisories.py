"""The dependency audit against a local OSV-protocol server: what it finds, what
it caches, and that a service that is down or answers nonsense ends as
``unavailable`` with the reason, never as an exception."""

from __future__ import annotations

import copy
import socket

from skiff.governance import AdvisoryDB, pinned
from skiff.governance.advisories import severity_of
from tests.osv import DJANGO_ORDER_BY, OSVServer

LOCK = """asgiref==3.8.1
django==3.2
pytz==2024.1
sqlparse==0.5.0
-e ./vendored/thing
"""


def test_pins_are_read_from_a_lock_and_names_normalized() -> None:
    """Only name==version lines count; names compare in PEP 503 form."""
    assert pinned(LOCK + "Flask_Login[extra]==0.6.3 ; python_version > '3'\n") == [
        ("asgiref", "3.8.1"), ("django", "3.2"), ("flask-login", "0.6.3"),
        ("pytz", "2024.1"), ("sqlparse", "0.5.0")]


def test_a_critical_advisory_is_found_with_its_fix_and_cached() -> None:
    """A locked version the service lists comes back with severity and fixed versions;
    the same lock audited again asks nothing more of the service."""
    with OSVServer([DJANGO_ORDER_BY]) as osv:
        db = AdvisoryDB(osv.url)
        audit = db.audit(pinned(LOCK))
        assert audit.status == "ok"
        [adv] = audit.advisories
        assert (adv.package, adv.version, adv.id, adv.severity, adv.fixed) == (
            "django", "3.2", "GHSA-xpfp-f569-q3p2", "CRITICAL", ("3.2.5",))
        assert "CVE-2021-35042" in adv.aliases
        assert audit.to_input()["counts"]["CRITICAL"] == 1
        asked = len(osv.requests)
        assert db.audit(pinned(LOCK)).advisories == audit.advisories
        assert len(osv.requests) == asked
        assert db.audit([("django", "3.2.5")]).advisories == ()


def test_paged_answers_are_followed() -> None:
    """A package with more advisories than a page holds gets all of them."""
    records = []
    for i in range(3):
        rec = copy.deepcopy(DJANGO_ORDER_BY)
        rec["id"] = f"GHSA-test-000{i}"
        records.append(rec)
    with OSVServer(records, page_size=1) as osv:
        audit = AdvisoryDB(osv.url).audit([("django", "3.2")])
        assert sorted(a.id for a in audit.advisories) == [r["id"] for r in records]
        assert ("POST", "/v1/query") in osv.requests


def test_a_service_that_is_down_or_broken_is_unavailable_not_an_error() -> None:
    """Closed port, 503 and a malformed answer each end as status unavailable with a
    reason; off and no requirements ask nothing."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    down = AdvisoryDB(closed, timeout=2).audit([("django", "3.2")])
    assert down.status == "unavailable" and "ConnectError" in down.error
    with OSVServer([DJANGO_ORDER_BY]) as osv:
        osv.broken = True
        broken = AdvisoryDB(osv.url).audit([("django", "3.2")])
        assert broken.status == "unavailable" and "503" in broken.error
        osv.broken = False
        osv.page = lambda q: "not a result"  # type: ignore[method-assign]
        bad = AdvisoryDB(osv.url).audit([("django", "3.2")])
        assert bad.status == "unavailable"
    assert AdvisoryDB("off").audit([("django", "3.2")]).status == "off"
    assert AdvisoryDB(closed).audit([]).status == "none"


def test_severity_comes_from_the_label_else_the_cvss_vector() -> None:
    """GitHub's label wins; without one the CVSS v3 base score maps onto the levels."""
    assert severity_of({"database_specific": {"severity": "moderate"}}) == "MODERATE"
    vec = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
    assert severity_of({"severity": [{"type": "CVSS_V3", "score": vec}]}) == "CRITICAL"
    low = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"  # 1.8
    assert severity_of({"severity": [{"type": "CVSS_V3", "score": low}]}) == "LOW"
    assert severity_of({"severity": [{"type": "CVSS_V3", "score": "nonsense"}]}) == "UNKNOWN"
    assert severity_of({}) == "UNKNOWN"
