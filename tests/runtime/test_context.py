"""InvokeContext and the Lambda context object handlers receive."""

import pytest
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

from skiff.runtime import LambdaContext
from skiff.runtime import context as context_module

from .conftest import make_context


def test_lambda_context_attributes():
    ctx = LambdaContext(make_context(request_id="abc", app="where2eat", revision="r7",
                                     memory_mb=256))
    assert ctx.aws_request_id == "abc"
    assert ctx.function_name == "where2eat"
    assert ctx.function_version == "r7"
    assert ctx.memory_limit_in_mb == 256 and isinstance(ctx.memory_limit_in_mb, int)
    assert ctx.invoked_function_arn == "arn:aws:lambda:us-east-1:000000000000:function:where2eat"
    assert ctx.log_group_name == "/aws/lambda/where2eat"
    assert "[r7]" in ctx.log_stream_name
    assert ctx.identity is None and ctx.client_context is None


@pytest.mark.parametrize(("deadline_ms", "now_s", "remaining"), [
    (10_000.0, 7.5, 2500),
    (10_000.0, 10.0, 0),
    (10_000.0, 12.0, 0),  # past the deadline: never negative
    (0.0, 12.0, 900_000),  # no deadline: Lambda's maximum
])
def test_remaining_time(monkeypatch, deadline_ms, now_s, remaining):
    monkeypatch.setattr(context_module.time, "time", lambda: now_s)
    ctx = LambdaContext(make_context(deadline_ms=deadline_ms))
    assert ctx.get_remaining_time_in_millis() == remaining


def test_powertools_reads_the_context():
    """Powertools' Logger takes these four fields from every invocation's context."""
    model = build_lambda_context_model(LambdaContext(make_context(app="pantry")))
    assert model.function_name == "pantry"
    assert model.function_memory_size == 128
    assert model.function_arn.endswith(":function:pantry")
    assert model.function_request_id == "req-1"
