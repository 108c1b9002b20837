"""Tests for __APP_NAME__: run them with `python -m pytest`."""

from pathlib import Path

from skiff.testing import AppClient

APP = Path(__file__).parent


def fire(time):
    return {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
            "time": time, "resources": [], "detail": {}}


def test_each_run_starts_where_the_last_ended():
    with AppClient(APP) as client:
        assert client.invoke(fire("2030-01-01T07:00:00Z")) == {
            "since": None, "until": "2030-01-01T07:00:00Z"}
        assert client.invoke(fire("2030-01-02T07:00:00Z"))["since"] == "2030-01-01T07:00:00Z"
