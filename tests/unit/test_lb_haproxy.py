"""``skiff lb haproxy``: the generated config is golden-tested, accepted by haproxy
itself, and keeps its promises (timeouts above the longest invocation, health
checks on the public endpoint). SKIFF_UPDATE_GOLDEN=1 rewrites the golden files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skiff.cli.lb import HEALTH_PATH, MAX_INVOCATION_SECONDS, haproxy_config
from skiff.errors import SkiffError

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SKIFF_UPDATE_GOLDEN") == "1"
CASES = {
    "haproxy_three_nodes.cfg": (["http://10.0.0.1:8080", "http://10.0.0.2:8080",
                                 "10.0.0.3:9000"], ":8080", "leastconn"),
    "haproxy_one_node_roundrobin.cfg": (["http://[::1]:8081/"], "127.0.0.1:80", "roundrobin"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_matches_its_golden_file(name: str) -> None:
    """The generator's output, byte for byte (a change to it is a reviewed diff)."""
    nodes, bind, balance = CASES[name]
    actual = haproxy_config(nodes, bind, balance=balance)
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual)
    assert path.exists(), f"no golden file; run with SKIFF_UPDATE_GOLDEN=1:\n{actual}"
    assert actual == path.read_text()


@pytest.mark.parametrize("name", sorted(CASES))
def test_haproxy_accepts_the_golden_config(name: str) -> None:
    """``haproxy -c -f`` validates each golden file (Debian's haproxy; .ci/postgres
    installs it)."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("no haproxy: apt-get install -y haproxy (.ci/postgres start does)")
    done = subprocess.run([haproxy, "-c", "-f", str(GOLDEN / name)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_timeouts_outlast_the_longest_invocation_a_manifest_allows() -> None:
    """The manifest's cap on resources.timeout is the constant haproxy's timeouts build
    on: a handler allowed 15 minutes is never cut by the load balancer."""
    from skiff.manifest import json_schema

    schema = json_schema()
    resources = schema["$defs"]["Resources"]["properties"]["timeout"]
    cap = next(v for k, v in _walk(resources) if k in ("maximum", "exclusiveMaximum"))
    assert cap == MAX_INVOCATION_SECONDS
    text = haproxy_config(["http://127.0.0.1:1"])
    for line in ("timeout client", "timeout server"):
        value = next(ln for ln in text.splitlines() if ln.strip().startswith(line))
        assert int(value.split()[-1].removesuffix("s")) > MAX_INVOCATION_SECONDS
    assert f"uri {HEALTH_PATH} " in text


def _walk(node: object):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


@pytest.mark.parametrize(("nodes", "message"), [
    ([], "at least one --node"),
    (["https://10.0.0.1"], "http://HOST:PORT"),
    (["http://10.0.0.1:8080/prefix"], "http://HOST:PORT"),
    (["http://user@10.0.0.1:8080"], "http://HOST:PORT"),
    (["http://10.0.0.1:99999"], "http://HOST:PORT"),
    (["10.0.0.1:8080", "http://10.0.0.1:8080"], "listed twice"),
])
def test_bad_nodes_are_refused_with_what_to_give(nodes: list[str], message: str) -> None:
    with pytest.raises(SkiffError, match=message) as info:
        haproxy_config(nodes)
    assert info.value.code == "bad_value"


def test_the_command_writes_the_config(tmp_path: Path) -> None:
    """`skiff lb haproxy --node ... -o FILE` writes what the function returns; without
    -o it prints it."""
    out = tmp_path / "haproxy.cfg"
    args = [sys.executable, "-m", "skiff", "lb", "haproxy", "--node", "http://10.0.0.1:8080",
            "--node", "http://10.0.0.2:8080", "--bind", ":9090"]
    done = subprocess.run([*args, "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = haproxy_config(["http://10.0.0.1:8080", "http://10.0.0.2:8080"], ":9090")
    assert out.read_text() == expected
    printed = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0 and printed.stdout == expected
    bad = subprocess.run([*args[:5], "--node", "ftp://x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "bad_value" in bad.stderr
