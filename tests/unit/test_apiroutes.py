"""An app's API routes, matched as API Gateway matches them."""

from __future__ import annotations

import pytest

from skiff.gateway.apiroutes import ApiRoutes, MethodNotAllowed, RouteMatch, compile_route

ROUTES = ApiRoutes([
    compile_route("/files/{proxy+}"),
    compile_route("/items/{id}", ("GET", "DELETE")),
    compile_route("/items/new", ("GET",)),
    compile_route("/users/{user}/posts/{post-id}", ("GET",)),
    compile_route("/items", ("POST",)),
])


@pytest.mark.parametrize(("method", "path", "key", "params"), [
    ("GET", "/items/7", "GET /items/{id}", {"id": "7"}),
    ("DELETE", "/items/7", "DELETE /items/{id}", {"id": "7"}),
    ("GET", "/items/new", "GET /items/new", {}),  # a literal segment beats a parameter
    ("GET", "/users/ada/posts/3", "GET /users/{user}/posts/{post-id}",
     {"user": "ada", "post-id": "3"}),
    ("PUT", "/files/a/b.txt", "ANY /files/{proxy+}", {"proxy": "a/b.txt"}),
    ("POST", "/items", "POST /items", {}),
])
def test_the_most_specific_route_binds_the_path(method, path, key, params):
    got = ROUTES.match(method, path)
    assert got == RouteMatch(route_key=key, resource=key.partition(" ")[2], params=params)


def test_a_path_without_a_route_is_none_and_a_wrong_method_says_which_are_allowed():
    assert ROUTES.match("GET", "/nothing") is None
    assert ROUTES.match("GET", "/items/7/extra") is None
    assert ROUTES.match("PUT", "/items/7") == MethodNotAllowed(("DELETE", "GET"))
    assert ROUTES.match("GET", "/items") == MethodNotAllowed(("POST",))


def test_a_parameter_binds_one_segment_and_never_an_empty_one():
    assert ROUTES.match("GET", "/items/") is None
    assert ROUTES.match("GET", "/files/") is None
