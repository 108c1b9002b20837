"""`skiff sfn`: state machines and their executions, over the server's Step Functions
protocol (/_skiff/sfn, the same API boto3 and the AWS CLI use)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from skiff.errors import SkiffError

sfn_app = typer.Typer(help="Step Functions state machines: start, describe, history, ls, "
                           "stop, redrive, rm, validate.", no_args_is_help=True)
UrlOpt = Annotated[str | None, typer.Option("--url", help="Skiff server URL (default: from "
                                                          "$SKIFF_HOME/server.json)")]
_ARN = "arn:aws:states:local:000000000000:stateMachine:"


def _out():  # noqa: ANN202 - the console of skiff.cli.app
    from skiff.cli.app import out

    return out


def call(operation: str, body: dict, url: str | None = None) -> dict:
    """One Step Functions call; an AWS error is a SkiffError named by its __type."""
    from skiff.cli.client import Client

    client = Client(url)
    resp = client.send("POST", f"{client.url}/_skiff/sfn", json=body, headers={
        "x-amz-target": f"AWSStepFunctions.{operation}",
        "content-type": "application/x-amz-json-1.0"})
    try:
        data = resp.json()
    except ValueError:
        data = {}
    if resp.status_code >= 400:
        if "error" in data:  # the admin guard's own answer (no token, a role missing)
            raise SkiffError(data["error"].get("message", resp.text),
                             code=data["error"].get("code", "error"), status=resp.status_code)
        raise SkiffError(data.get("message", resp.text), code=data.get("__type", "sfn_error"),
                         status=resp.status_code)
    return data


def _arn(machine: str) -> str:
    return machine if machine.startswith("arn:") else _ARN + machine


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _input(text: str | None) -> str:
    if text is None:
        return "{}"
    path = Path(text[1:]) if text.startswith("@") else None
    value = path.read_text() if path else text
    try:
        json.loads(value)
    except ValueError:
        raise SkiffError(f"the input must be JSON (or @file.json), got {text[:100]!r}",
                         code="bad_input", status=400) from None
    return value


@sfn_app.command("start")
def start(machine: Annotated[str, typer.Argument(help="state machine name or ARN")],
          input: Annotated[str | None, typer.Argument(help="JSON input, or @file.json")] = None,
          name: Annotated[str | None, typer.Option(help="execution name")] = None,
          sync: Annotated[bool, typer.Option(help="wait for the end (EXPRESS machines)")] = False,
          url: UrlOpt = None) -> None:
    """Start an execution; prints its ARN (with --sync, its outcome)."""
    body: dict[str, Any] = {"stateMachineArn": _arn(machine), "input": _input(input)}
    if name:
        body["name"] = name
    res = call("StartSyncExecution" if sync else "StartExecution", body, url)
    if sync:
        _out().print_json(data=res)
    else:
        _out().print(res["executionArn"], highlight=False)


@sfn_app.command("describe")
def describe(execution: str, url: UrlOpt = None) -> None:
    """An execution's status, input and output."""
    _out().print_json(data=call("DescribeExecution", {"executionArn": execution}, url))


@sfn_app.command("history")
def history(execution: str, url: UrlOpt = None) -> None:
    """An execution's events, as GetExecutionHistory answers them."""
    res = call("GetExecutionHistory", {"executionArn": execution}, url)
    table = Table("id", "time", "type", "details")
    for e in res["events"]:
        details = next((v for k, v in e.items() if k.endswith("EventDetails")), {})
        table.add_row(str(e["id"]), _when(e["timestamp"]), e["type"],
                      json.dumps(details)[:120])
    _out().print(table)


@sfn_app.command("ls")
def ls(machine: Annotated[str | None, typer.Argument(help="list this machine's executions")] = None,
       status: Annotated[str | None, typer.Option(help="RUNNING, SUCCEEDED, FAILED, ...")] = None,
       url: UrlOpt = None) -> None:
    """State machines; with MACHINE, its executions, newest first."""
    if machine is None:
        table = Table("state machine", "type", "created")
        for m in call("ListStateMachines", {}, url)["stateMachines"]:
            table.add_row(m["name"], m["type"], _when(m["creationDate"]))
        _out().print(table)
        return
    body: dict[str, Any] = {"stateMachineArn": _arn(machine)}
    if status:
        body["statusFilter"] = status
    table = Table("execution", "status", "started", "stopped")
    for x in call("ListExecutions", body, url)["executions"]:
        table.add_row(x["executionArn"], x["status"], _when(x["startDate"]),
                      _when(x.get("stopDate")))
    _out().print(table)


@sfn_app.command("stop")
def stop(execution: str, error: str | None = None, cause: str | None = None,
         url: UrlOpt = None) -> None:
    """Stop a running execution (ABORTED)."""
    body = {"executionArn": execution, **({"error": error} if error else {}),
            **({"cause": cause} if cause else {})}
    call("StopExecution", body, url)
    _out().print(f"[green]stopped[/] {execution}", highlight=False)


@sfn_app.command("redrive")
def redrive(execution: str, url: UrlOpt = None) -> None:
    """Run a FAILED, TIMED_OUT or ABORTED execution again from where it stopped (what
    succeeded before is not run again)."""
    call("RedriveExecution", {"executionArn": execution}, url)
    _out().print(f"[green]redriven[/] {execution}", highlight=False)


@sfn_app.command("rm")
def rm(machine: Annotated[str, typer.Argument(help="state machine name or ARN")],
       url: UrlOpt = None) -> None:
    """Delete a state machine: its revisions, executions, histories and triggers."""
    call("DeleteStateMachine", {"stateMachineArn": _arn(machine)}, url)
    _out().print(f"[green]deleted[/] {machine}", highlight=False)


@sfn_app.command("validate")
def validate(file: Annotated[Path, typer.Argument(help="an .asl.json file")],
             url: UrlOpt = None) -> None:
    """Validate a definition on the server (which also checks that the apps its tasks
    name are deployed); exits 1 with the diagnostics when it is not valid."""
    res = call("ValidateStateMachineDefinition", {"definition": file.read_text()}, url)
    for d in res["diagnostics"]:
        _out().print(f"[red]{d['severity']}[/] {d['code']} at {d['location']}: {d['message']}",
                     highlight=False)
    if res["result"] != "OK":
        raise typer.Exit(1)
    _out().print("[green]OK[/]")
