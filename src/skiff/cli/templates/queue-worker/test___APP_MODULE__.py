"""Tests for __APP_NAME__: run them with `python -m pytest`."""

import json
from pathlib import Path

from skiff.testing import AppClient

APP = Path(__file__).parent


def batch(*bodies):
    return {"Records": [{"messageId": f"m{i}", "body": json.dumps(b), "eventSource": "aws:sqs"}
                        for i, b in enumerate(bodies)]}


def test_each_job_is_done():
    with AppClient(APP) as client:
        assert client.invoke(batch({"id": 1}, {"id": 2})) == {"batchItemFailures": []}


def test_a_bad_message_is_retried_alone():
    with AppClient(APP) as client:
        result = client.invoke(batch({"id": 1}, {"no": "id"}))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
