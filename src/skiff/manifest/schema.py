"""The JSON Schema of skiff.yaml, for editors (``skiff schema`` prints it).
It describes the YAML shape: camelCase keys, ``static`` as a string or a
mapping, durations as numbers or strings like "30s"."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from .model import Manifest

SCHEMA_ID = "https://skiff.dev/schemas/v1/skiff.yaml.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Generator(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: Any) -> bool:
        # Titles like "Memorymb" add noise to editor tooltips; descriptions say it.
        return False


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a skiff.yaml document. Checks that need
    more than one field or the file system (minInstances <= maxInstances, the
    static directory exists) are left to ``load_manifest``."""
    schema = Manifest.model_json_schema(by_alias=True, mode="validation",
                                        schema_generator=_Generator)
    return {
        "$schema": DIALECT,
        "$id": SCHEMA_ID,
        **schema,
        "title": "Skiff MicroApp (skiff.yaml)",
        "description": "One micro app for Skiff: what to run, how to reach it, "
                       "and its limits.",
    }
