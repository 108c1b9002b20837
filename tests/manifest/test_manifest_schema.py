"""json_schema(): the editor-facing JSON Schema of skiff.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from skiff.manifest import json_schema

GOLDEN = Path(__file__).parent / "golden"
VALID = sorted(p.with_suffix(".yaml") for p in GOLDEN.glob("*.json"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_identity() -> None:
    """The schema names its dialect, id and title, and is plain JSON."""
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://")
    assert schema["title"]
    assert json.loads(json.dumps(schema)) == schema


def test_fields_have_descriptions() -> None:
    """Editors show a description for every scalar field."""
    for name, definition in json_schema()["$defs"].items():
        for field, prop in definition["properties"].items():
            assert "$ref" in prop or prop.get("description"), f"{name}.{field}"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_golden_manifests_pass(path: Path, validator) -> None:
    """Every manifest that loads also validates against the schema as written."""
    validator.validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("case", [
    {"spec": {"handler": "app:handler", "scaling": {"maxInstance": 5}}},
    {"spec": {"handler": "app:handler", "resources": {"timeout": "soon"}}},
    {"spec": {"handler": "app:handler", "env": {"bad-key": "x"}}},
    {"spec": {"handler": "app:handler", "secrets": [{"name": "X", "ref": "vault://x"}]}},
    {"spec": {"handler": "app:handler", "static": 5}},
    {"spec": {}},
    {"spec": {"handler": "app:handler"}, "metadata": {"name": "Bad_Name"}},
    {"spec": {"handler": "app:handler"}, "apiVersion": "skiff.dev/v2"},
], ids=["unknown-field", "bad-duration", "bad-env-key", "bad-secret-ref", "bad-static",
        "no-handler-or-static", "bad-name", "wrong-api-version"])
def test_bad_manifests_fail(case: dict, validator) -> None:
    """Mistakes the schema can see are flagged in the editor."""
    document = {"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
                "metadata": {"name": "app"}, **case}
    assert not validator.is_valid(document)
