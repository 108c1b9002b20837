"""`skiff alerts ls | ack | silence | silences | unsilence | history`: SLO and platform
alerts over the admin API."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from skiff.cli.governance import UrlOpt, _client, _out, _when, duration

alerts_app = typer.Typer(help="SLO and platform alerts: list, acknowledge, silence, history.",
                         no_args_is_help=True)


@alerts_app.command("ls")
def alerts_ls(every: Annotated[bool, typer.Option("--all", help="resolved ones too")] = False,
              url: UrlOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Firing alerts (with --all, resolved ones too) and each notification channel."""
    found = _client(url).json("GET", "/alerts", params={"state": "" if every else "firing"})
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("id", "severity", "state", "since", "acked", "notices", "summary")
    for a in found["alerts"]:
        notices = ", ".join(f"{n['channel']} {n['state']}" for n in a["notifications"])
        if a["silenced"] or a["silenced_now"]:
            notices = "silenced" + (f"; {notices}" if notices else "")
        table.add_row(escape(a["id"]), a["severity"], a["state"], _when(a["started"]),
                      escape(a["acked_by"] or "-"), escape(notices or "-"), escape(a["summary"]))
    _out().print(table)
    for c in found["channels"]:
        if c["state"] == "failing":
            _out().print(f"[red]{c['channel']} failing[/] after {c['attempts']} attempt(s): "
                         f"{escape(c['error'])}; next try {_when(c['next_at'])}")


@alerts_app.command("ack")
def alerts_ack(alert_id: str, url: UrlOpt = None) -> None:
    """Acknowledge a firing alert (who and when are recorded until it resolves)."""
    res = _client(url).json("POST", f"/alerts/{alert_id}/ack")
    _out().print(f"[green]acknowledged[/] {escape(res['id'])} by {escape(res['acked_by'])}")


@alerts_app.command("silence")
def alerts_silence(
        rule: Annotated[str | None, typer.Option("--rule", help="e.g. slo_availability, slo_*")] = None,
        subject: Annotated[str | None, typer.Option("--subject", "--app", help="the app or queue")] = None,
        severity: Annotated[str | None, typer.Option("--severity", help="page, ticket, warning")] = None,
        for_: Annotated[str, typer.Option("--for", help="how long: 30m, 2h, 1d")] = "2h",
        comment: Annotated[str, typer.Option("--comment")] = "",
        url: UrlOpt = None) -> None:
    """Silence matching alerts for a while: they still show, nobody is told."""
    matchers = {k: v for k, v in (("rule", rule), ("subject", subject),
                                  ("severity", severity)) if v}
    res = _client(url).json("POST", "/alerts/silences",
                            json={"matchers": matchers, "duration": duration(for_),
                                  "comment": comment})
    _out().print(f"silence {res['id']} until {_when(res['until'])}: "
                 f"{escape(', '.join(f'{k}={v}' for k, v in res['matchers'].items()))}")


@alerts_app.command("silences")
def alerts_silences(url: UrlOpt = None,
                    as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    found = _client(url).json("GET", "/alerts/silences")
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("id", "matchers", "until", "by", "comment")
    for s in found:
        table.add_row(s["id"], escape(", ".join(f"{k}={v}" for k, v in s["matchers"].items())),
                      _when(s["until"]), escape(s["created_by"]), escape(s["comment"]))
    _out().print(table)


@alerts_app.command("unsilence")
def alerts_unsilence(silence_id: str, url: UrlOpt = None) -> None:
    _client(url).json("DELETE", f"/alerts/silences/{silence_id}")
    _out().print(f"silence {silence_id} removed")


@alerts_app.command("history")
def alerts_history(limit: Annotated[int, typer.Option("--limit")] = 50, url: UrlOpt = None,
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    found = _client(url).json("GET", "/alerts/history", params={"limit": limit})
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("when", "alert", "event", "by", "detail")
    for e in found:
        table.add_row(_when(e["at"]), escape(e["id"]), e["event"], escape(e["actor"] or "-"),
                      escape(e["detail"]))
    _out().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
