"""The deploy-time credential scan. Fixture secrets are assembled at run time so
this file itself holds no string a scanner would flag."""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path

import pytest

from skiff.governance import HINT, Finding, scan_app

AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
PEM_HEADER = "-----BEGIN " + "RSA PRIVATE KEY-----"
TOKEN = hashlib.sha1(b"skiff fixture token").hexdigest()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "config").mkdir(parents=True)
    (app / "handler.py").write_text(
        "import os\n\n"
        "def handler(event, context):\n"
        "    key = os.environ['STRIPE_KEY']\n"
        "    return {'statusCode': 200, 'body': 'hello', 'len': len(key)}\n")
    (app / "aws.py").write_text(f'REGION = "eu-west-1"\nACCESS_KEY_ID = "{AWS_KEY}"\n')
    (app / "config" / "deploy.pem").write_text(f"{PEM_HEADER}\nMIIEowIBAAKCAQEA\n")
    (app / "settings.py").write_text(f'DEBUG = False\n\nAPI_TOKEN = "{TOKEN}"\n')
    return app


def files(app: Path) -> list[Path]:
    return sorted(p.relative_to(app) for p in app.rglob("*") if p.is_file())


def test_finds_each_kind_where_it_is(app_dir: Path) -> None:
    """An AWS key, a private key header and a high-entropy token, each at its line."""
    findings = scan_app(app_dir, files(app_dir))
    assert [(f.file, f.line, f.type) for f in findings] == [
        ("aws.py", 2, "AWS Access Key"),
        ("config/deploy.pem", 1, "Private Key"),
        ("settings.py", 3, "Hex High Entropy String"),
    ]
    assert all(f.hint == HINT for f in findings)
    assert "skiff secrets set NAME" in HINT and "secret://NAME" in HINT


def test_clean_file_has_no_findings(app_dir: Path) -> None:
    assert scan_app(app_dir, [Path("handler.py")]) == []


def test_findings_never_hold_the_value(app_dir: Path) -> None:
    """Findings go to deploy output and logs: no field, str or repr shows the secret."""
    for finding in scan_app(app_dir, files(app_dir)):
        shown = " ".join([str(finding), repr(finding),
                          *map(str, dataclasses.astuple(finding))])
        for secret in (AWS_KEY, TOKEN, "MIIEowIBAAKCAQEA"):
            assert secret not in shown
        assert [f.name for f in dataclasses.fields(Finding)] == ["file", "line", "type", "hint",
                                                              "severity"]


def test_binary_large_outside_and_missing_files_are_skipped(app_dir: Path, tmp_path: Path
                                                            ) -> None:
    """Binary data, oversize files, symlinks leaving the app and missing paths are not scanned."""
    (app_dir / "blob.bin").write_bytes(b"\0\x01" + AWS_KEY.encode() + b"\0")
    (app_dir / "huge.txt").write_text(f'K = "{AWS_KEY}"\n' + "x" * (1 << 20))
    outside = tmp_path / "outside.py"
    outside.write_text(f'K = "{AWS_KEY}"\n')
    (app_dir / "link.py").symlink_to(outside)
    paths = [Path("blob.bin"), Path("huge.txt"), Path("link.py"), Path("missing.py"),
             Path("../outside.py")]
    assert scan_app(app_dir, paths) == []


def test_absolute_paths_inside_the_app_are_reported_relative(app_dir: Path) -> None:
    (finding,) = scan_app(app_dir, [app_dir / "aws.py"])
    assert finding.file == "aws.py"


def test_allowlist_pragma_silences_a_line(app_dir: Path) -> None:
    """The author's escape hatch for a known false positive is detect-secrets' pragma."""
    (app_dir / "aws.py").write_text(f'EXAMPLE = "{AWS_KEY}"  # pragma: allowlist secret\n')
    assert scan_app(app_dir, [Path("aws.py")]) == []


def test_scan_leaves_warnings_handling_alone(app_dir: Path) -> None:
    """Importing detect-secrets turns on logging.captureWarnings; the scan turns it back off."""
    before = warnings.showwarning
    scan_app(app_dir, files(app_dir))
    assert warnings.showwarning is before


def test_findings_in_tests_and_sample_events_are_warnings(tmp_path: Path) -> None:
    """AWS's sample events and a test's fixture key warn; the same key in code denies."""
    app = tmp_path / "app"
    (app / "events").mkdir(parents=True)
    (app / "tests").mkdir()
    (app / "events" / "event.json").write_text(f'{{"accessKeyId": "{AWS_KEY}"}}\n')
    (app / "tests" / "test_handler.py").write_text(f'KEY = "{AWS_KEY}"\n')
    (app / "handler.py").write_text(f'KEY = "{AWS_KEY}"\n')
    got = {(f.file, f.severity) for f in scan_app(app, files(app)) if f.type == "AWS Access Key"}
    assert got == {("events/event.json", "warn"), ("tests/test_handler.py", "warn"),
                   ("handler.py", "deny")}


def test_a_development_default_is_not_a_credential(tmp_path: Path) -> None:
    """Flask's tutorial: SECRET_KEY = "dev" (a placeholder) is no finding; a long one is."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "config.py").write_text('SECRET_KEY = "dev"\npassword = "changeme"\n')
    assert scan_app(app, files(app)) == []
    (app / "config.py").write_text(f'SECRET_KEY = "{TOKEN[:10]}-kept-{TOKEN[10:]}"\n')
    assert [f.severity for f in scan_app(app, files(app))] and all(
        f.severity == "deny" for f in scan_app(app, files(app)))
