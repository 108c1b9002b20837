"""Logs that help, through the real CLI against a real server: the terminal's access
and app lines, `skiff logs` (newest first by default, --tail, --since, -f,
--request-id, --level, --json) and `skiff invocations`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from tests.conftest import SkiffServer


def skiff(server: SkiffServer, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "skiff", *args, "--url", server.url],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SKIFF_HOME": str(server.home), "COLUMNS": "250"})
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_terminal_shows_access_lines_app_output_and_tracebacks(observed: SkiffServer) -> None:
    ok = observed.http.get("/obs-web/hello")
    failed = observed.http.get("/obs-web/", params={"fail": "1"})
    assert (ok.status_code, failed.status_code) == (200, 500)
    rid_ok, rid_failed = ok.headers["x-skiff-request-id"], failed.headers["x-skiff-request-id"]
    access = observed.wait_for(lambda: [line for line in observed.lines if f"rid={rid_ok}" in line],
                               "the access line")
    assert " obs-web GET /obs-web/hello 200 " in access[0] and "ms " in access[0]
    assert (" warm " in access[0]) != (" cold " in access[0])
    assert "\x1b[" not in access[0]  # not a TTY: no colour
    observed.wait_for(lambda: any(f"rid={rid_failed}" in line and " 500 handler_error " in line
                                  for line in observed.lines), "the failed request's line")
    observed.wait_for(lambda: any(line.endswith("obs-web | obs-web serving /hello")
                                  for line in observed.lines), "the app's own line")
    observed.wait_for(lambda: any("obs-web | [stderr] ValueError: obs-web was asked to fail"
                                  in line for line in observed.lines), "the traceback")


def test_skiff_logs_filters(observed: SkiffServer) -> None:
    failed = observed.http.get("/obs-web/", params={"fail": "1"})
    rid = failed.headers["x-skiff-request-id"]
    observed.http.get("/obs-web/last")

    newest = skiff(observed, "logs", "obs-web", "--tail", "1", "--json").stdout
    [last] = _records(newest)
    assert last["line"] == "obs-web serving /last" and last["level"] == "info"

    mine = _records(skiff(observed, "logs", "obs-web", "--request-id", rid, "--since", "10m",
                          "--json").stdout)
    assert mine and {r["request_id"] for r in mine} == {rid}
    assert any(r["line"] == "ValueError: obs-web was asked to fail" and r["stream"] == "stderr"
               for r in mine)
    assert any(r["line"].startswith("request failed: handler_error") for r in mine)

    errors = _records(skiff(observed, "logs", "obs-web", "--level", "error", "--json").stdout)
    assert errors and {r["level"] for r in errors} <= {"error", "critical"}
    assert not any("serving" in r["line"] for r in errors)

    text = skiff(observed, "logs", "obs-web", "--tail", "3").stdout
    assert "obs-web serving /last" in text and not text.lstrip().startswith("{")

    bad = skiff(observed, "logs", "obs-web", "--since", "yesterday-ish", check=False)
    assert bad.returncode != 0 and "since" in bad.stdout + bad.stderr


def test_skiff_logs_follows(observed: SkiffServer) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "skiff", "logs", "obs-web", "-f", "--json",
                             "--tail", "1", "--url", observed.url], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "SKIFF_HOME": str(observed.home)})
    seen: list[dict] = []
    reader = threading.Thread(target=lambda: seen.extend(
        json.loads(line) for line in proc.stdout))  # type: ignore[union-attr]
    reader.start()
    try:
        # readiness waits, generous: under a full suite on 2 cores the follower's first
        # poll and the app's first line can take a while
        observed.wait_for(lambda: seen, "the first line", timeout=120)  # following from here on
        observed.http.get("/obs-web/followed")
        observed.wait_for(lambda: any(r["line"] == "obs-web serving /followed" for r in seen),
                          "the followed line", timeout=120)
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(10)


def test_skiff_invocations_lists_figures_and_trace_ids(observed: SkiffServer) -> None:
    resp = observed.http.get("/obs-web/")
    trace_id = resp.headers["traceresponse"].split("-")[1]
    rid = resp.headers["x-skiff-request-id"]
    rows = _records(skiff(observed, "invocations", "obs-web", "--json").stdout)
    [mine] = [r for r in rows if r["id"] == rid]
    assert mine["trace_id"] == trace_id and mine["status"] == 200
    assert {"duration_ms", "cold", "init_ms", "memory_mb", "trigger"} <= set(mine)
    table = skiff(observed, "invocations", "obs-web", "--limit", "5").stdout
    assert trace_id in table and rid[:8] in table
