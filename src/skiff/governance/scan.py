"""The deploy-time scan for credentials written into an app's files.

A key pasted into ``app.py`` ends up in every revision, every archive and
every export; the fix is cheap at deploy time and expensive afterwards. The
scan runs the ``detect-secrets`` plugins (AWS keys, private keys, tokens of
well-known services, high-entropy strings, ``password = "..."``) over each
text file of the app and reports where, and what kind, but never the value:
findings are shown in deploy output, logs and the dashboard.

A line the author knows is harmless is silenced the detect-secrets way, with
a ``pragma: allowlist secret`` comment on it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

HINT = ("move it to a secret: `skiff secrets set NAME` and reference it in skiff.yaml "
        "spec.secrets as {name: ENV_VAR, ref: secret://NAME}")

# A public IP address in code is configuration, not a credential.
SKIPPED_PLUGINS = frozenset({"IPPublicDetector"})
MAX_FILE_BYTES = 1 << 20  # bigger files are data, not code someone typed a key into
_SNIFF_BYTES = 8192

# detect-secrets keeps its plugin settings in process-wide globals.
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Finding:
    """A likely credential: where it is and what kind. The value is never kept."""

    file: str  # POSIX path relative to the app directory
    line: int
    type: str  # the detect-secrets secret type, e.g. "AWS Access Key"
    hint: str = HINT

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.type}; {self.hint}"


def scan_app(app_dir: Path, files: list[Path]) -> list[Finding]:
    """Scan ``files`` (relative to ``app_dir``, or absolute inside it) for hard-coded
    credentials. Binary files, files over MAX_FILE_BYTES, symlinks leading out of
    the app and non-files are skipped. Findings are sorted by file and line."""
    app_dir = Path(app_dir).resolve()
    targets: list[tuple[str, Path]] = []
    for file in files:
        path = (app_dir / file).resolve()
        if not path.is_relative_to(app_dir) or not _is_text_file(path):
            continue
        targets.append((path.relative_to(app_dir).as_posix(), path))
    if not targets:
        return []
    scan_file, default_settings = _detect_secrets()
    found: set[Finding] = set()
    with _lock, default_settings() as settings:
        settings.disable_plugins(*SKIPPED_PLUGINS)
        for rel, path in targets:
            for secret in scan_file(str(path)):
                found.add(Finding(rel, int(secret.line_number), str(secret.type)))
    return sorted(found, key=lambda f: (f.file, f.line, f.type))


def _is_text_file(path: Path) -> bool:
    try:
        if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            return False
        with path.open("rb") as f:
            return b"\0" not in f.read(_SNIFF_BYTES)
    except OSError:
        return False


def _detect_secrets():  # noqa: ANN202
    """Import detect-secrets on first use (it pulls in requests: keep it off startup), and
    undo the process-wide ``logging.captureWarnings(True)`` its import performs."""
    shown = warnings.showwarning
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    if warnings.showwarning is not shown:
        logging.captureWarnings(False)
    return scan_file, default_settings
