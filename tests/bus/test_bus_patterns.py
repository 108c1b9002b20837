"""EventBridge-style patterns: one table row per operator behaviour, each row
named by the sentence it proves, plus the validation errors and their paths."""

from __future__ import annotations

from typing import Any

import pytest

from skiff.bus import InvalidPattern
from skiff.bus.patterns import matches, validate_pattern

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "7f1c",
    "detail-type": "Order Placed",
    "source": "shop.orders",
    "account": "123456789012",
    "time": "2026-01-02T03:04:05Z",
    "region": "eu-west-1",
    "resources": ["arn:a", "arn:b"],
    "detail": {
        "state": "running",
        "total": 150.5,
        "count": 5,
        "zero": 0,
        "vip": True,
        "note": None,
        "empty": "",
        "none": [],
        "tags": ["red", "blue"],
        "ip": "10.0.0.33",
        "ip6": "2001:db8::1",
        "path": "/usr/lib/x.so",
        "star": "a*b",
        "file": "photo.PNG",
        "Name": "Alice",
        "items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 3}],
        "nested": {"deep": {"x": 1}},
    },
}


def d(**fields: Any) -> dict[str, Any]:
    """A pattern on the event's ``detail``."""
    return {"detail": fields}


CASES = [
    # exact values
    ("an exact string matches", {"source": ["shop.orders"]}, True),
    ("a list of values matches any of them", {"source": ["x", "shop.orders"]}, True),
    ("a different string does not match", {"source": ["shop"]}, False),
    ("exact matching is case-sensitive", {"source": ["Shop.Orders"]}, False),
    ("a number matches the same number", d(count=[5]), True),
    ("an int and a float of equal value match", d(count=[5.0]), True),
    ("true matches true", d(vip=[True]), True),
    ("true is not the number 1", d(vip=[1]), False),
    ("0 is not false", d(zero=[False]), False),
    ("null matches a null value", d(note=[None]), True),
    ("null does not match an empty string", d(empty=[None]), False),
    ("an empty string matches an empty string", d(empty=[""]), True),
    ("an empty string does not match null", d(note=[""]), False),
    ("a missing field matches no value", d(absent=["x"]), False),
    ("null does not match a missing field", d(absent=[None]), False),
    ("an event array matches if any element matches", {"resources": ["arn:b"]}, True),
    ("arrays match when the sets intersect", d(tags=["green", "blue"]), True),
    ("arrays do not match when the sets are disjoint", d(tags=["green"]), False),
    ("every field named must match", {"source": ["shop.orders"], "detail-type": ["No"]}, False),
    ("nested objects match level by level", d(nested={"deep": {"x": [1]}}), True),
    ("an object pattern does not match a leaf", {"source": {"x": ["y"]}}, False),
    ("a leaf pattern does not match an object", d(nested=["x"]), False),
    ("a nested pattern matches an element of an array of objects", d(items={"sku": ["B"]}), True),
    ("one array element must satisfy the whole nested pattern",
     d(items={"sku": ["A"], "qty": [3]}), False),
    ("fields of the same element match together", d(items={"sku": ["B"], "qty": [3]}), True),
    ("a value list may mix exact values and operators", d(state=["stopped", {"prefix": "run"}]),
     True),
    # prefix / suffix
    ("prefix matches the start of a string", {"time": [{"prefix": "2026-01"}]}, True),
    ("prefix fails on another start", {"time": [{"prefix": "2025"}]}, False),
    ("prefix never matches a number", d(count=[{"prefix": "5"}]), False),
    ("prefix may ignore case", d(file=[{"prefix": {"equals-ignore-case": "PHOTO"}}]), True),
    ("suffix matches the end of a string", d(file=[{"suffix": ".PNG"}]), True),
    ("suffix is case-sensitive", d(file=[{"suffix": ".png"}]), False),
    ("suffix may ignore case", d(file=[{"suffix": {"equals-ignore-case": ".png"}}]), True),
    # equals-ignore-case
    ("equals-ignore-case matches any casing", d(Name=[{"equals-ignore-case": "aLiCe"}]), True),
    ("equals-ignore-case still compares the text", d(Name=[{"equals-ignore-case": "bob"}]),
     False),
    ("equals-ignore-case never matches a number", d(count=[{"equals-ignore-case": "5"}]), False),
    # wildcard
    ("a wildcard star spans any characters", d(path=[{"wildcard": "/usr/*/x.so"}]), True),
    ("a leading star matches any start", d(path=[{"wildcard": "*.so"}]), True),
    ("a wildcard must match the whole string", d(path=[{"wildcard": "usr/*"}]), False),
    ("a wildcard without a star is an exact match", d(path=[{"wildcard": "/usr/lib/x.so"}]),
     True),
    ("an escaped star matches a literal star", d(star=[{"wildcard": "a\\*b"}]), True),
    ("an escaped star does not match other characters", d(path=[{"wildcard": "/usr\\*"}]), False),
    # anything-but
    ("anything-but a value matches other values", d(state=[{"anything-but": "stopped"}]), True),
    ("anything-but a value rejects that value", d(state=[{"anything-but": "running"}]), False),
    ("anything-but a list rejects every listed value",
     d(state=[{"anything-but": ["running", "stopped"]}]), False),
    ("anything-but numbers matches other numbers", d(count=[{"anything-but": [1, 2]}]), True),
    ("anything-but numbers rejects a listed number", d(count=[{"anything-but": [5]}]), False),
    ("anything-but prefix rejects strings with that prefix",
     d(state=[{"anything-but": {"prefix": "run"}}]), False),
    ("anything-but prefix accepts other strings", d(state=[{"anything-but": {"prefix": "st"}}]),
     True),
    ("anything-but suffix rejects strings with that suffix",
     d(file=[{"anything-but": {"suffix": ".PNG"}}]), False),
    ("anything-but equals-ignore-case rejects any casing",
     d(state=[{"anything-but": {"equals-ignore-case": "RUNNING"}}]), False),
    ("anything-but wildcard rejects matching strings",
     d(path=[{"anything-but": {"wildcard": "*/lib/*"}}]), False),
    ("anything-but needs the field present", d(absent=[{"anything-but": "x"}]), False),
    ("anything-but on an array matches if any element is not excluded",
     d(tags=[{"anything-but": "red"}]), True),
    # numeric
    ("a numeric range includes its closed bound", d(count=[{"numeric": [">", 0, "<=", 5]}]),
     True),
    ("a numeric range excludes its open bound", d(count=[{"numeric": [">", 0, "<", 5]}]), False),
    ("numeric = matches equal numbers", d(count=[{"numeric": ["=", 5]}]), True),
    ("numeric >= works on floats", d(total=[{"numeric": [">=", 150.5]}]), True),
    ("numeric > is strict", d(total=[{"numeric": [">", 150.5]}]), False),
    ("numeric matches zero", d(zero=[{"numeric": ["=", 0]}]), True),
    ("numeric never matches a string", d(state=[{"numeric": [">", 0]}]), False),
    ("numeric never matches a boolean", d(vip=[{"numeric": ["=", 1]}]), False),
    # exists
    ("exists true matches a present field", d(state=[{"exists": True}]), True),
    ("exists true fails on a missing field", d(absent=[{"exists": True}]), False),
    ("exists false matches a missing field", d(absent=[{"exists": False}]), True),
    ("exists false fails on a present field", d(state=[{"exists": False}]), False),
    ("exists true matches a null value", d(note=[{"exists": True}]), True),
    ("exists looks at leaves only, so an object does not exist",
     d(nested=[{"exists": True}]), False),
    ("exists false matches a field holding an object", d(nested=[{"exists": False}]), True),
    ("an empty array has no leaves", d(none=[{"exists": True}]), False),
    ("exists false matches under a missing parent", {"missing": {"x": [{"exists": False}]}},
     True),
    # cidr
    ("cidr matches an IPv4 address in the block", d(ip=[{"cidr": "10.0.0.0/24"}]), True),
    ("cidr fails outside the block", d(ip=[{"cidr": "10.0.1.0/24"}]), False),
    ("cidr matches IPv6", d(ip6=[{"cidr": "2001:db8::/32"}]), True),
    ("cidr never matches a non-address", d(state=[{"cidr": "10.0.0.0/8"}]), False),
    # $or
    ("$or matches when any branch matches",
     {"$or": [{"source": ["nope"]}, {"detail-type": ["Order Placed"]}]}, True),
    ("$or fails when no branch matches",
     {"$or": [{"source": ["nope"]}, {"detail-type": ["nope"]}]}, False),
    ("$or works inside nested objects",
     d(**{"$or": [{"count": [{"numeric": [">", 10]}]}, {"vip": [True]}]}), True),
    ("$or is ANDed with its sibling fields",
     {"source": ["nope"], "$or": [{"region": ["eu-west-1"]}, {"account": ["x"]}]}, False),
    ("$or branches may nest another $or",
     {"$or": [{"source": ["nope"]},
              {"$or": [{"region": ["us-east-1"]}, {"detail": {"state": ["running"]}}]}]}, True),
]


@pytest.mark.parametrize("pattern, expected", [(p, e) for _, p, e in CASES],
                         ids=[why for why, _, _ in CASES])
def test_operator_table(pattern: dict[str, Any], expected: bool) -> None:
    """Each row: the pattern validates and matches the sample event exactly when expected."""
    validate_pattern(pattern)
    assert matches(pattern, EVENT) is expected


def test_matches_never_raises_on_odd_events() -> None:
    """A non-object event, or odd values where a pattern expects others, simply do not match."""
    pattern = {"detail": {"count": [{"numeric": [">", 1]}], "ip": [{"cidr": "10.0.0.0/8"}]}}
    assert matches(pattern, ["not", "an", "object"]) is False
    assert matches(pattern, {"detail": {"count": "7", "ip": "not-an-ip"}}) is False
    assert matches(pattern, {"detail": [{"count": 7, "ip": "10.1.2.3"}]}) is True


INVALID = [
    ("a pattern must be an object", ["source"], "(pattern)"),
    ("an empty pattern is rejected", {}, "(pattern)"),
    ("match values must be wrapped in a list", {"source": "shop"}, "source"),
    ("an empty value list is rejected", {"source": []}, "source"),
    ("an empty nested object is rejected", {"detail": {}}, "detail"),
    ("a list inside a value list is rejected", {"x": [[1]]}, "x[0]"),
    ("NaN is not a number to match", {"x": [float("nan")]}, "x[0]"),
    ("prefix takes a string", {"source": [{"prefix": 1}]}, "source[0].prefix"),
    ("prefix's only option is equals-ignore-case",
     {"source": [{"prefix": {"wildcard": "a"}}]}, "source[0].prefix"),
    ("unknown operators are named", {"source": [{"contains": "x"}]}, "source[0].contains"),
    ("an operator object holds one operator", {"source": [{"prefix": "a", "suffix": "b"}]},
     "source[0]"),
    ("equals-ignore-case takes a string", {"x": [{"equals-ignore-case": 1}]},
     "x[0].equals-ignore-case"),
    ("a numeric range cannot be empty", {"n": [{"numeric": [">", 5, "<", 3]}]}, "n[0].numeric"),
    ("numeric comparisons are from a fixed set", {"n": [{"numeric": ["!=", 5]}]},
     "n[0].numeric[0]"),
    ("numeric bounds are numbers", {"n": [{"numeric": [">", "5"]}]}, "n[0].numeric[1]"),
    ("= cannot be part of a range", {"n": [{"numeric": ["=", 5, "<", 9]}]}, "n[0].numeric"),
    ("a range has one lower and one upper bound", {"n": [{"numeric": [">", 1, ">", 3]}]},
     "n[0].numeric"),
    ("numeric needs an operator and a bound", {"n": [{"numeric": [">"]}]}, "n[0].numeric"),
    ("exists takes a boolean", {"e": [{"exists": "yes"}]}, "e[0].exists"),
    ("a wildcard has no consecutive stars", {"w": [{"wildcard": "a**b"}]}, "w[0].wildcard"),
    ("a backslash escapes only * or \\", {"w": [{"wildcard": "a\\b"}]}, "w[0].wildcard"),
    ("cidr needs a valid network", {"c": [{"cidr": "10.0.0.0/33"}]}, "c[0].cidr"),
    ("anything-but cannot be an empty list", {"a": [{"anything-but": []}]},
     "a[0].anything-but"),
    ("anything-but lists are all strings or all numbers", {"a": [{"anything-but": ["x", 1]}]},
     "a[0].anything-but"),
    ("anything-but takes only string operators",
     {"a": [{"anything-but": {"numeric": [">", 1]}}]}, "a[0].anything-but.numeric"),
    ("anything-but prefix takes a string", {"a": [{"anything-but": {"prefix": 3}}]},
     "a[0].anything-but.prefix"),
    ("anything-but rejects null", {"a": [{"anything-but": None}]}, "a[0].anything-but"),
    ("$or needs at least two branches", {"$or": [{"a": ["x"]}]}, "$or"),
    ("every $or branch is an object", {"$or": [{"a": ["x"]}, "b"]}, "$or[1]"),
    ("errors deep inside $or name the full path",
     {"d": {"$or": [{"a": ["x"]}, {"b": [{"exists": 1}]}]}}, "d.$or[1].b[0].exists"),
]


@pytest.mark.parametrize("pattern, path", [(p, path) for _, p, path in INVALID],
                         ids=[why for why, _, _ in INVALID])
def test_invalid_patterns_name_the_bad_path(pattern: Any, path: str) -> None:
    """Each row: validation fails with code invalid_pattern, status 400 and the offending path."""
    with pytest.raises(InvalidPattern) as info:
        validate_pattern(pattern)
    err = info.value
    assert (err.code, err.status, err.details["path"]) == ("invalid_pattern", 400, path)
    assert path in err.message
