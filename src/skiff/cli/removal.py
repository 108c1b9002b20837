"""What `skiff rm APP` says before it asks: everything the removal takes, from the app's
current manifest and figures as the server describes them (a pure function, so the
wording is table-tested), and the question itself, which never hangs a script."""

from __future__ import annotations

import sys
from collections.abc import Callable

from skiff.errors import SkiffError
from skiff.manifest import parse_manifest
from skiff.manifest.queues import declared_queues, destinations


def goes(app: dict, revisions: int, *, purge: bool) -> list[str]:
    """The lines that list what removing ``app`` (GET /apps/NAME with its manifest)
    takes, and whether `skiff restore` brings it back."""
    name = app["name"]
    manifest = parse_manifest(app["manifest"], source=f"{name} (as deployed)")
    spec = manifest.spec
    routes = [app["path"], app["host"]] + [
        " ".join(x for x in (r.host, r.path) if x) for r in spec.routes]
    triggers = [f"queue {t.queue}" if t.queue else f"schedule {t.schedule}" if t.schedule
                else "an event rule" for t in spec.triggers]
    queues = sorted(set(declared_queues(manifest)) | destinations(manifest))
    lines = [f"skiff rm {name} removes:",
             f"  routes     {', '.join(routes)}",
             f"  instances  {app.get('instances', 0)} running (stopped first)",
             f"  triggers   {', '.join(triggers) or 'none'}",
             f"  queues     {', '.join(queues) or 'none'} (those no other app owns now, "
             "with their messages)",
             "  KV         every item of the app",
             f"  code       {revisions} revision(s) on disk"]
    if purge:
        lines.append(f"--purge: no archive is kept; nothing brings {name} back")
    else:
        lines.append(f"it is archived first: `skiff restore {name}` brings it back")
    return lines


def confirm(name: str, yes: bool, ask: Callable[[str], bool],
            interactive: Callable[[], bool] | None = None) -> bool:
    """True to go ahead: ``--yes``, or a person said so. Without a terminal to ask on
    (a script, CI) and without ``--yes`` it is an error: a prompt there would hang."""
    if yes:
        return True
    if not (interactive or sys.stdin.isatty)():
        exc = SkiffError(f"removing {name} needs a confirmation and there is no terminal "
                         "to ask on", code="confirmation_required", status=400,
                         hint=f"add --yes to remove it: skiff rm {name} --yes")
        exc.exit_code = 2  # type: ignore[attr-defined]
        raise exc
    return ask(f"remove {name}?")
