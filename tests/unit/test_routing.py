"""Host and path routing."""

import pytest

from skiff.gateway.routing import Match, Route, Router, conflict


@pytest.fixture
def router():
    r = Router()
    r.set_app("shop", [])
    r.set_app("food", [Route("food", path="/lunch"), Route("food", host="food.example.com")])
    r.set_app("api", [Route("api", host="api.example.com", path="/v1")])
    return r


@pytest.mark.parametrize(("host", "path", "expected"), [
    ("127.0.0.1:8080", "/shop/items", Match("shop", "/shop", "/items")),
    ("127.0.0.1:8080", "/shop", Match("shop", "/shop", "/")),
    ("127.0.0.1:8080", "/shop/", Match("shop", "/shop", "/")),
    ("shop.localhost:8080", "/items", Match("shop", "", "/items")),
    ("127.0.0.1", "/lunch/today", Match("food", "/lunch", "/today")),
    ("127.0.0.1", "/lunchbox", None),
    ("food.example.com", "/x", Match("food", "", "/x")),
    ("api.example.com", "/v1/users", Match("api", "/v1", "/users")),
    ("api.example.com", "/v2/users", None),
    ("127.0.0.1", "/nope/x", None),
    ("nope.localhost", "/x", None),
])
def test_match(router, host, path, expected):
    """Each row: a request's host and path, and where it must go."""
    assert router.match(host, path) == expected


def test_remove_app(router):
    """A removed app no longer matches by any route."""
    router.remove_app("food")
    assert router.match("food.example.com", "/x") is None
    assert router.match("127.0.0.1", "/food/x") is None


@pytest.fixture
def contested():
    """Routes an attacker could only have by an operator's grant, served beside neighbour."""
    r = Router()
    r.set_app("neighbour", [])
    r.set_app("attacker", [Route("attacker", path=""), Route("attacker", path="/neighbour"),
                           Route("attacker", host="neighbour.localhost")])
    return r


@pytest.mark.parametrize(("host", "path", "expected"), [
    ("127.0.0.1", "/neighbour/x", Match("neighbour", "/neighbour", "/x")),
    ("neighbour.localhost", "/x", Match("neighbour", "", "/x")),
    ("127.0.0.1", "/elsewhere", Match("attacker", "", "/elsewhere")),
    ("not-deployed.localhost", "/x", Match("attacker", "", "/x")),
])
def test_owned_defaults_win_over_manifest_routes(contested, host, path, expected):
    """/<app>/ and <app>.localhost reach that app whatever other apps declare."""
    assert contested.match(host, path) == expected


def test_a_host_owner_keeps_its_own_paths_on_it():
    """On a host an app routes, /<other-app>/ is still that app's: deploying an app
    named "checkout" does not take shop.example.com/checkout/."""
    r = Router()
    r.set_app("shop", [Route("shop", host="shop.example.com")])
    r.set_app("checkout", [])
    assert r.match("shop.example.com", "/checkout/pay") == Match("shop", "", "/checkout/pay")


@pytest.mark.parametrize(("route", "owner"), [
    (Route("attacker", path="/neighbour"), "neighbour"),
    (Route("attacker", path="/neighbour/admin"), "neighbour"),
    (Route("attacker", path=""), "food"),  # over every app: the first by name is named
    (Route("attacker", host="neighbour.localhost"), "neighbour"),
    (Route("attacker", host="later.localhost"), "later"),
    (Route("attacker", host="localhost"), "the platform"),
    (Route("attacker", host="127.0.0.1"), "the platform"),
    (Route("attacker", host="skiff.corp.example"), "the platform"),
    (Route("attacker", host="food.example.com"), "food"),
    (Route("attacker", host="food.example.com", path="/other"), "food"),
    (Route("attacker", path="/lunch"), "food"),
    (Route("attacker", path="/lunch/menu"), "food"),
    (Route("attacker", path="/lu"), None),
    (Route("attacker", path="/lunchbox"), None),
    (Route("attacker", path="/neighbourhood"), None),
    (Route("attacker", host="attacker.localhost"), None),
    (Route("attacker", host="attacker.example.com"), None),
    (Route("attacker", path="/attacker/v2"), None),
    (Route("food", path="/lunch/menu"), None),
])
def test_conflict(route, owner):
    """Each row: an extra route and whose traffic it would take (None: nobody's)."""
    routes = [Route("food", path="/lunch"), Route("food", host="food.example.com")]
    assert conflict(route, routes, {"neighbour", "food", "attacker"},
                    platform_hosts={"skiff.corp.example"}) == owner


def test_a_path_over_another_apps_route_conflicts():
    """/shop is over /shop/cart: whoever comes second is refused."""
    assert conflict(Route("b", path="/shop"), [Route("a", path="/shop/cart")], {"a"}) == "a"
