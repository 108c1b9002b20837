"""A node's name: given (flag > SKIFF_NODE_NAME), else made so that two nodes on one
machine differ; a name that cannot go into a header refuses to start."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from skiff.config import Config
from skiff.errors import SkiffError
from skiff.server import serve


def test_the_argument_wins_over_the_environment(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.setenv("SKIFF_NODE_NAME", "from-env")
    assert Config.resolve(home=tmp_path).node_name == "from-env"
    assert Config.resolve(home=tmp_path, node_name="from-flag").node_name == "from-flag"


def test_the_default_is_the_hostname_and_the_port_or_the_pid(monkeypatch,  # noqa: ANN001
                                                             tmp_path: Path) -> None:
    """Port 0 is picked at bind time, after the name is needed: the pid tells apart two
    nodes on one machine then."""
    monkeypatch.delenv("SKIFF_NODE_NAME", raising=False)
    host = socket.gethostname()
    assert Config.resolve(home=tmp_path, port=8081).node_name.endswith(":8081")
    assert Config.resolve(home=tmp_path, port=0).node_name.endswith(f"-{os.getpid()}")
    assert Config(home=tmp_path, port=0).node_name.startswith(host.split(".")[0][:20])


@pytest.mark.parametrize("name", ["two words", "x\r\nset-cookie: a=b", "-dash", "é" * 3,
                                  "n" * 129])
def test_a_name_unfit_for_a_header_refuses_to_start(tmp_path: Path, name: str) -> None:
    """400 bad_config naming the flag and the variable, before the home is locked."""
    with pytest.raises(SkiffError) as err:
        asyncio.run(serve(Config(home=tmp_path / "home", port=0, node_name=name), []))
    assert err.value.code == "bad_config"
    assert "--node-name" in err.value.message and "SKIFF_NODE_NAME" in err.value.message
    assert not (tmp_path / "home").exists()
