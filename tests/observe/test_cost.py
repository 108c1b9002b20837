"""The cost model's arithmetic, table-tested against figures worked by hand, and
the packaged model: it loads, cites its sources, and an operator's file overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.errors import SkiffError
from skiff.observe.cost import (
    CostModel,
    Usage,
    app_cost,
    load_model,
    prices,
    report,
    step,
    usage,
)

# round rates, so each expected figure below is worked out by hand
MODEL = CostModel(currency="USD", lambda_per_million=0.20, lambda_gb_s_x86=0.00001,
                  lambda_gb_s_arm=0.000008, lambda_init_billed=True, run_per_million=0.40,
                  run_vcpu_s=0.00002, run_gib_s=0.000002, run_step_ms=100, core_hour=0.036,
                  gib_hour=0.0036)


def _rec(memory_mb: int, duration_ms: float, *, init_ms: float = 0.0, status: int = 200,
         used_mb: float | None = None) -> dict:
    r = {"memory_mb": memory_mb, "duration_ms": duration_ms,
         "billed_ms": max(1, -(-duration_ms // 1)), "init_ms": init_ms, "cold": init_ms > 0,
         "status": status, "ts": 0.0}
    if used_mb is not None:
        r["used_mb"] = used_mb
    return r


@pytest.mark.parametrize(("ms", "step_ms", "expected"), [
    (0.5, 100, 100), (100, 100, 100), (100.5, 100, 200), (250, 100, 300), (1, 1, 1),
    (1.2, 1, 2)])
def test_time_rounds_up_to_whole_steps(ms: float, step_ms: int, expected: float) -> None:
    assert step(ms, step_ms) == expected


@pytest.mark.parametrize(("records", "cpu", "expected"), [
    # 1 GiB for 1 s, warm, 1 core: 1 GB-s
    ([_rec(1024, 1000)], 1.0,
     {"lambda_x86": 0.0000102, "lambda_arm": 0.0000082, "cloud_run": 0.0000224,
      "skiff": 0.000011}),
    # cold: 512 MB, 149.2 ms (billed 150) + INIT 250 ms = 0.2 GB-s; Cloud Run 400 ms
    ([_rec(512, 149.2, init_ms=250)], 1.0,
     {"lambda_x86": 0.0000022, "lambda_arm": 0.0000018, "cloud_run": 0.0000088,
      "skiff": 0.0000042}),
    # half a core: Cloud Run's and Skiff's CPU halve, Lambda's price does not move
    ([_rec(1024, 1000)], 0.5,
     {"lambda_x86": 0.0000102, "lambda_arm": 0.0000082, "cloud_run": 0.0000124,
      "skiff": 0.000006}),
    # used more than reserved (2 GiB of 1): Skiff charges the larger
    ([_rec(1024, 1000, used_mb=2048)], 1.0,
     {"lambda_x86": 0.0000102, "lambda_arm": 0.0000082, "cloud_run": 0.0000224,
      "skiff": 0.000012}),
    # 1,000 requests of 1 ms at 128 MB: requests dominate Lambda and Cloud Run
    ([_rec(128, 0.4)] * 1000, 1.0,
     # Cloud Run rounds each up to 100 ms: 100 vCPU-s and 12.5 GiB-s
     {"lambda_x86": 0.00020125, "lambda_arm": 0.000201, "cloud_run": 0.002425,
      "skiff": 0.000010125}),
])
def test_prices_of_usage(records: list[dict], cpu: float, expected: dict) -> None:
    got = prices(usage(records), cpu=cpu, model=MODEL)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_init_is_billed_only_when_the_model_says_so() -> None:
    u = usage([_rec(1024, 1000, init_ms=1000)])
    assert u.gb_s == 2.0 and u.cold == 1
    free_init = CostModel(**{**MODEL.__dict__, "lambda_init_billed": False})
    assert round(prices(u, cpu=1, model=free_init)["lambda_x86"], 8) == 0.0000102
    assert round(prices(u, cpu=1, model=MODEL)["lambda_x86"], 8) == 0.0000202


def test_figures_per_day_and_per_thousand_requests() -> None:
    u = usage([_rec(1024, 1000)] * 4 + [_rec(1024, 1000, status=502)])
    out = app_cost(u, cpu=1.0, model=MODEL, days=2.0)
    assert (out["requests"], out["errors"], out["gb_s"]) == (5, 1, 5.0)
    assert out["cost"]["skiff"] == 0.000055
    assert out["per_day"]["skiff"] == 0.0000275
    assert out["per_1k_requests"]["skiff"] == 0.011
    idle = app_cost(Usage(), cpu=1.0, model=MODEL, days=1.0)
    assert idle["per_1k_requests"] is None and idle["cost"]["skiff"] == 0.0


def test_a_report_by_owner_adds_apps_priced_each_at_its_cpu() -> None:
    one = usage([_rec(1024, 1000)])
    apps = {"a": ("user:alice", 1.0, one), "b": ("user:alice", 0.5, one),
            "c": ("group:ops", 1.0, one), "d": ("", 1.0, Usage())}
    by_app = report(apps, model=MODEL, since=0.0, until=86400.0)
    assert [r["app"] for r in by_app["rows"]] == ["a", "b", "c", "d"]
    assert by_app["rows"][3]["owner"] is None and by_app["days"] == 1.0
    owners = report(apps, model=MODEL, since=0.0, until=86400.0, by="owner")
    rows = {r["owner"]: r for r in owners["rows"]}
    assert rows["user:alice"]["apps"] == ["a", "b"] and rows["user:alice"]["requests"] == 2
    assert rows["user:alice"]["cost"]["skiff"] == 0.000011 + 0.000006
    assert rows["user:alice"]["cost"]["cloud_run"] == 0.0000224 + 0.0000124
    with pytest.raises(SkiffError) as bad:
        report(apps, model=MODEL, since=0.0, until=1.0, by="team")
    assert bad.value.code == "bad_request"


def test_the_packaged_model_cites_its_sources_and_is_overridable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKIFF_COST_MODEL", raising=False)
    model = load_model(tmp_path)
    assert model.lambda_per_million == 0.20 and model.lambda_gb_s_x86 == 0.0000166667
    assert model.lambda_gb_s_arm == 0.0000133334 and model.lambda_init_billed
    assert model.run_vcpu_s == 0.000024 and model.run_per_million == 0.40
    sources = {w: (u, r) for w, u, r in model.sources}
    assert sources["lambda"][0].startswith("https://aws.amazon.com/lambda/pricing/")
    assert sources["cloud_run"] == ("https://cloud.google.com/run/pricing", "2026-12-02")
    (tmp_path / "cost.yaml").write_text("skiff: {core_hour: 0.05}\nlambda: {per_million_requests: 0.25}\n")
    over = load_model(tmp_path, gib_hour=0.01)
    assert (over.core_hour, over.gib_hour, over.lambda_per_million) == (0.05, 0.01, 0.25)
    assert over.lambda_gb_s_x86 == model.lambda_gb_s_x86  # the rest as packaged
    (tmp_path / "cost.yaml").write_text("cloud_run: {per_vcpu_second: cheap}\n")
    with pytest.raises(SkiffError) as bad:
        load_model(tmp_path)
    assert bad.value.code == "bad_config" and "cloud_run.per_vcpu_second" in bad.value.message
