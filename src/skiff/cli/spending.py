"""`skiff cost | budgets ls|set|rm`: what apps cost (and would cost on Lambda and
Cloud Run), and the monthly budgets operators set per owner."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from skiff.cli.governance import HomeOpt, UrlOpt, _client, _out
from skiff.errors import SkiffError

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
budgets_app = typer.Typer(help="Monthly budgets per owner (operators): list, set, remove.",
                          no_args_is_help=True)


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}" if value < 1 else f"{value:.2f}"


def cost(by: Annotated[str, typer.Option("--by", help="app or owner")] = "app",
         since: Annotated[str | None, typer.Option("--since", help="30d, epoch seconds or ISO 8601 (default: this month)")] = None,
         url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Cost per app (or owner) on Skiff, beside what Lambda and Cloud Run would charge:
    requests, GB-s, total, per day and per 1,000 requests."""
    params = {"by": by} | ({"since": since} if since else {})
    res = _client(url, home).json("GET", "/cost", params=params)
    if as_json:
        print(json.dumps(res, indent=2))
        return
    table = Table(by, "requests", "GB-s", f"skiff {res['currency']}", "per day", "per 1k req",
                  "lambda x86 /1k", "lambda arm /1k", "cloud run /1k",
                  title=f"cost over {res['days']:g} day(s)")
    for r in res["rows"]:
        per_1k = r["per_1k_requests"] or {}
        table.add_row(str(r.get(by) or "-"), str(r["requests"]), f"{r['gb_s']:g}",
                      _money(r["cost"]["skiff"]),
                      _money((r["per_day"] or {}).get("skiff")), _money(per_1k.get("skiff")),
                      _money(per_1k.get("lambda_x86")), _money(per_1k.get("lambda_arm")),
                      _money(per_1k.get("cloud_run")))
    _out().print(table)


@budgets_app.command("ls")
def budgets_ls(url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every budget with this month's use and what is in force."""
    found = _client(url, home).json("GET", "/budgets")
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("owner", "metric", "limit", "used", "%", "state", "action", "enforced")
    for b in found:
        table.add_row(b["owner"], b["metric"], f"{b['limit']:g}", f"{b['used']:g}",
                      f"{b['percent']:.0f}", b["state"], b["action"], b["enforced"] or "-")
    _out().print(table)


@budgets_app.command("set")
def budgets_set(
        owner: Annotated[str, typer.Argument(help="user:NAME or group:NAME")],
        money: Annotated[float | None, typer.Option("--cost", help="a month's cost on Skiff")] = None,
        gb_s: Annotated[float | None, typer.Option("--gb-s", help="a month's GB-seconds")] = None,
        requests: Annotated[float | None, typer.Option("--requests", help="a month's requests")] = None,
        action: Annotated[str, typer.Option("--action", help="at 100 %: throttle, scale-to-zero or notify")] = "throttle",
        url: UrlOpt = None, home: HomeOpt = None) -> None:
    """Set the owner's monthly budget of one metric; notified at 80 %, the action at 100 %."""
    given = [(m, v) for m, v in (("cost", money), ("gb_s", gb_s), ("requests", requests))
             if v is not None]
    if len(given) != 1:
        raise SkiffError("give one of --cost, --gb-s or --requests", code="bad_budget",
                         status=400)
    metric, limit = given[0]
    b = _client(url, home).json("PUT", "/budgets", json={
        "owner": owner, "metric": metric, "limit": limit, "action": action})
    _out().print(f"budget {b['id']}: {b['limit']:g} a month, then {b['action']}; used "
                 f"{b['used']:g} ({b['percent']:.0f} %)")


@budgets_app.command("rm")
def budgets_rm(owner: str,
               metric: Annotated[str | None, typer.Option("--metric", help="cost, gb_s or requests (default: all)")] = None,
               url: UrlOpt = None, home: HomeOpt = None) -> None:
    res = _client(url, home).json("DELETE", f"/budgets/{owner}",
                                  params={"metric": metric} if metric else None)
    _out().print(f"removed {res['removed']} budget(s) of {owner}")


def register(app: typer.Typer) -> None:
    app.command("cost")(cost)
    app.add_typer(budgets_app, name="budgets")
