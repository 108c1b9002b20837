"""A deploy's stages as the server reports them (resolve, install N packages, build
environment, start trial instance): a spinner naming the stage on a terminal, one
plain line a stage when piped (CI logs, a file), so nothing is redrawn there."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from skiff.errors import SkiffError


def deploy(client: Any, content: bytes, params: dict, out: Console, label: str) -> dict:
    """POST the app with ``progress=true``; the final result, or its error raised."""
    start = time.monotonic()
    lines = client.lines("POST", "/apps", content=content,
                         params={**params, "progress": "true"},
                         headers={"content-type": "application/gzip"})
    tty = out.is_terminal

    def stage(text: str) -> None:
        out.print(f"  {text}" if tty else f"deploy {label}: {text}", style="dim" if tty else None,
                  highlight=False, markup=False)

    if not tty:
        stage(f"upload {len(content) / 1024:.0f} KiB")
    status = out.status(f"deploying {label}: upload …") if tty else None
    try:
        if status is not None:
            status.start()
        for msg in lines:
            if "stage" in msg:
                stage(str(msg["stage"]))
                if status is not None:
                    status.update(f"deploying {label}: {msg['stage']} …")
            elif "result" in msg:
                res = msg["result"]
                res["seconds"] = round(time.monotonic() - start, 1)
                return res
            elif "error" in msg:
                err = msg["error"]
                raise SkiffError(err.get("message", "deploy failed"),
                                 code=err.get("code", "deploy_failed"),
                                 status=msg.get("status", 422),
                                 **{k: v for k, v in err.items() if k not in ("message", "code")})
    finally:
        if status is not None:
            status.stop()
    raise SkiffError("the server ended the deploy without a result; see `skiff logs APP`",
                     code="deploy_failed", status=502)
