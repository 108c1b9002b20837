"""The reserved environment of an instance: Lambda's documented variables."""

from __future__ import annotations

import re

from skiff.manifest.fields import RESERVED_ENV
from skiff.runtime.environment import instance_environment, log_stream_name


def test_every_variable_the_platform_sets_is_reserved_in_the_manifest() -> None:
    """A name the platform sets cannot be set by spec.env (it would be silently lost)."""
    env = instance_environment(app="a", revision="r" * 16, handler="app.h", code_dir="/c",
                               memory_mb=128)
    assert set(env) <= RESERVED_ENV


def test_the_log_stream_is_named_as_lambda_names_it() -> None:
    name = log_stream_name("abc", now=0)
    assert re.fullmatch(r"1970/01/01/\[abc\][0-9a-f]{32}", name)
    assert log_stream_name("abc") != log_stream_name("abc")  # one per execution environment


def test_region_and_handler_are_the_given_ones() -> None:
    env = instance_environment(app="a", revision="r", handler=None, code_dir="/c",
                               memory_mb=128, region="eu-central-1")
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-central-1"
    assert "_HANDLER" not in env
