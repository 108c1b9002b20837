"""The deploy-time scan for credentials written into an app's files.

A key pasted into ``app.py`` ends up in every revision, every archive and
every export; the fix is cheap at deploy time and expensive afterwards. The
scan runs the ``detect-secrets`` plugins (AWS keys, private keys, tokens of
well-known services, high-entropy strings, ``password = "..."``) over each
text file of the app and reports where, and what kind, but never the value:
findings are shown in deploy output, logs and the dashboard.

A line the author knows is harmless is silenced the detect-secrets way, with
a ``pragma: allowlist secret`` comment on it, and files listed in
``.skiffignore`` are neither deployed nor scanned.

Not every finding stops a deploy. What only looks like a credential in tests
and sample data (``tests/``, ``test_*.py``, ``events/*.json``, fixtures) is a
*warning*, returned with the deploy; a
keyword assignment of a short or placeholder value (Flask's ``SECRET_KEY =
"dev"``) is no finding at all. Everything else *denies* the deploy.
"""

from __future__ import annotations

import fnmatch
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


#: Where files hold sample data and tests, not code that ships (fnmatch on the
#: POSIX path relative to the app, and on each directory name).
SAMPLE_DIRS = frozenset({"tests", "test", "testing", "fixtures", "events", "samples",
                         "examples", "testdata", "__fixtures__"})
SAMPLE_FILES = ("test_*.py", "*_test.py", "conftest.py", "*.test.*", "*.spec.*")
#: A keyword assignment of one of these, or of anything shorter than
#: MIN_KEYWORD_VALUE, is a development default, not a credential.
PLACEHOLDERS = frozenset({"dev", "development", "test", "testing", "changeme", "change-me",
                          "secret", "password", "example", "xxx", "todo", "dummy", "none",
                          "null", "default", "placeholder", "insecure", "local"})
MIN_KEYWORD_VALUE = 8


@dataclass(frozen=True, slots=True)
class Finding:
    """A likely credential: where it is and what kind. The value is never kept.
    ``severity``: "deny" stops the deploy, "warn" is reported with it."""

    file: str  # POSIX path relative to the app directory
    line: int
    type: str  # the detect-secrets secret type, e.g. "AWS Access Key"
    hint: str = HINT
    severity: str = "deny"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.type}; {self.hint}"


def is_sample_path(rel: str) -> bool:
    """Whether ``rel`` (POSIX, relative to the app) is test or sample data."""
    parts = rel.split("/")
    return (any(d.lower() in SAMPLE_DIRS for d in parts[:-1])
            or any(fnmatch.fnmatch(parts[-1], pattern) for pattern in SAMPLE_FILES))


def _placeholder(secret_type: str, value: str | None) -> bool:
    if secret_type != "Secret Keyword" or value is None:
        return False
    return len(value) < MIN_KEYWORD_VALUE or value.strip().lower() in PLACEHOLDERS


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
            sample = is_sample_path(rel)
            for secret in scan_file(str(path)):
                value = secret.secret_value
                if _placeholder(str(secret.type), value):
                    continue
                found.add(Finding(rel, int(secret.line_number), str(secret.type),
                                  severity="warn" if sample else "deny"))
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
