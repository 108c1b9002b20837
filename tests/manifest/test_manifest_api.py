"""The Python API around the golden cases: parse_manifest, load_manifest,
the Manifest object and the ManifestError it raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from skiff.errors import ManifestError
from skiff.manifest import Manifest, load_manifest, parse_manifest

GOLDEN = Path(__file__).parent / "golden"


def minimal(**spec: object) -> dict:
    return {"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
            "metadata": {"name": "app"}, "spec": {"handler": "app:handler", **spec}}


def test_python_attributes_are_snake_case() -> None:
    """YAML camelCase fields read as snake_case attributes, durations as seconds."""
    manifest = parse_manifest(minimal(resources={"memoryMB": 128, "timeout": "2m"},
                                      scaling={"minInstances": 1, "idleTimeout": "90s"},
                                      ttlDays=7))
    assert manifest.name == "app"
    assert manifest.spec.resources.memory_mb == 128
    assert manifest.spec.resources.timeout == 120.0
    assert manifest.spec.scaling.min_instances == 1
    assert manifest.spec.scaling.idle_timeout == 90.0
    assert manifest.spec.ttl_days == 7


def test_static_shorthand_normalizes_to_an_object() -> None:
    """`static: public` becomes an object with dir and path."""
    static = parse_manifest(minimal(static="public/")).spec.static
    assert (static.dir, static.path) == ("public", "/")
    assert parse_manifest(minimal()).spec.static is None


def test_manifest_is_frozen() -> None:
    """A validated manifest cannot be changed, nested parts included."""
    manifest = parse_manifest(minimal())
    with pytest.raises(ValidationError):
        manifest.spec.scaling.max_instances = 99  # type: ignore[misc]
    with pytest.raises(ValidationError):
        manifest.metadata = manifest.metadata  # type: ignore[misc]


@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_to_dict_round_trips(case: str) -> None:
    """The canonical dict of every valid golden manifest is itself a valid manifest that
    means the same thing (the registry stores it and restores apps from it)."""
    manifest = load_manifest(GOLDEN / f"{case}.yaml")
    again = parse_manifest(manifest.to_dict(), base_dir=GOLDEN)
    assert again == manifest
    assert again.to_dict() == manifest.to_dict()


def test_error_details_list_each_problem() -> None:
    """details holds the file and one {path, message} per problem, sorted by path."""
    with pytest.raises(ManifestError) as info:
        parse_manifest(minimal(scaling={"maxInstances": 0}, routes=[{"path": "x"}]),
                       source="apps/x/skiff.yaml")
    error = info.value
    assert error.status == 422 and error.code == "invalid_manifest"
    assert error.details == {
        "file": "apps/x/skiff.yaml",
        "errors": [
            {"path": "spec.routes[0].path",
             "message": 'expected a path prefix starting with "/", got "x"'},
            {"path": "spec.scaling.maxInstances", "message": "expected an integer >= 1, got 0"},
        ],
    }
    assert str(error).splitlines()[0] == (
        'apps/x/skiff.yaml: spec.routes[0].path: expected a path prefix starting with "/", '
        'got "x"')


def test_static_dir_checked_only_with_a_base_dir(tmp_path: Path) -> None:
    """Without a base directory the static dir cannot be checked, so it is not."""
    data = minimal(static="assets")
    assert parse_manifest(data).spec.static.dir == "assets"
    with pytest.raises(ManifestError, match="existing directory"):
        parse_manifest(data, base_dir=tmp_path)
    (tmp_path / "assets").mkdir()
    assert parse_manifest(data, base_dir=tmp_path).spec.static.dir == "assets"


def test_load_from_a_directory(tmp_path: Path) -> None:
    """A directory path loads the skiff.yaml inside it."""
    (tmp_path / "skiff.yaml").write_text(
        "apiVersion: skiff.dev/v1\nkind: MicroApp\nmetadata: {name: d}\n"
        "spec: {handler: 'app:h'}\n")
    assert load_manifest(tmp_path).name == "d"
    assert load_manifest(str(tmp_path / "skiff.yaml")).name == "d"


def test_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    """A directory without skiff.yaml names the file it looked for."""
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert str(info.value) == f"{tmp_path / 'skiff.yaml'}: file not found"


def test_yaml_error_details_carry_line_and_column(tmp_path: Path) -> None:
    """Editors can jump to a syntax error from the details."""
    file = tmp_path / "skiff.yaml"
    file.write_text("spec: [unclosed\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(file)
    [error] = info.value.details["errors"]
    assert error["line"] == 2 and error["path"] == ""


def test_construct_from_python_with_aliases() -> None:
    """Manifest.model_validate takes the YAML shape, the same as parse_manifest."""
    assert Manifest.model_validate(minimal()) == parse_manifest(minimal())
