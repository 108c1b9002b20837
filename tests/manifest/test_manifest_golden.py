"""Golden files: each golden/<case>.yaml loads to golden/<case>.json (the
normalized to_dict()) or fails with exactly golden/<case>.err.
SKIFF_UPDATE_GOLDEN=1 rewrites the expected outputs from the current code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skiff.errors import ManifestError
from skiff.manifest import load_manifest

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml"))
UPDATE = os.environ.get("SKIFF_UPDATE_GOLDEN") == "1"


def render(case: str) -> tuple[str, str]:
    """The (suffix, text) a case produces now."""
    try:
        manifest = load_manifest(Path(f"{case}.yaml"))  # relative, so .err files are portable
    except ManifestError as exc:
        return ".err", str(exc) + "\n"
    return ".json", json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest validates to its recorded output, byte for byte."""
    monkeypatch.chdir(GOLDEN)
    suffix, actual = render(case)
    expected_file = GOLDEN / f"{case}{suffix}"
    other_file = GOLDEN / f"{case}{'.json' if suffix == '.err' else '.err'}"
    if UPDATE:
        expected_file.write_text(actual)
        other_file.unlink(missing_ok=True)
        return
    assert not other_file.exists(), f"{case} was expected to give {other_file.name}:\n{actual}"
    assert expected_file.exists(), f"no golden output; run with SKIFF_UPDATE_GOLDEN=1:\n{actual}"
    assert actual == expected_file.read_text()


def test_every_golden_output_has_its_yaml() -> None:
    """No orphaned .json/.err files linger after a case is renamed or removed."""
    outputs = {p.stem for p in GOLDEN.iterdir() if p.suffix in (".json", ".err")}
    assert outputs <= set(CASES)
