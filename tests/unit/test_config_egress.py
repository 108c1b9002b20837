"""Egress settings resolve like every other: argument > SKIFF_* environment > default."""

from __future__ import annotations

from skiff.config import Config


def test_egress_defaults(tmp_path, monkeypatch):
    for name in ("EGRESS_ALLOW", "EGRESS_MAX_CONNECTIONS", "EGRESS_MAX_CONNECTIONS_PER_APP",
                 "EGRESS_IDLE_TIMEOUT"):
        monkeypatch.delenv(f"SKIFF_{name}", raising=False)
    config = Config.resolve(home=tmp_path)
    assert config.egress_allow == ()
    assert (config.egress_max_connections, config.egress_max_connections_per_app) == (0, 64)
    assert config.egress_idle_timeout == 300.0


def test_egress_from_environment_and_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIFF_EGRESS_ALLOW", "127.0.0.1:5432, 10.1.0.0/16 [::1]:8080")
    monkeypatch.setenv("SKIFF_EGRESS_MAX_CONNECTIONS_PER_APP", "8")
    config = Config.resolve(home=tmp_path, egress_max_connections=500)
    assert config.egress_allow == ("127.0.0.1:5432", "10.1.0.0/16", "[::1]:8080")
    assert (config.egress_max_connections, config.egress_max_connections_per_app) == (500, 8)
    assert Config.resolve(home=tmp_path, egress_allow=["169.254.169.254:80"]).egress_allow == (
        "169.254.169.254:80",)
