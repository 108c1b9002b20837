"""Host and path routing."""

import pytest

from skiff.gateway.routing import Match, Route, Router


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
