"""skiff.yaml: load, validate and normalize one micro app's manifest into an
immutable Manifest, hash it with the app's files into a revision id, and
export its JSON Schema. Every failure is a ``skiff.errors.ManifestError``
whose lines read ``{file}: {path}: expected ..., got ...``."""

from .hashing import content_hash, iter_app_files, manifest_json
from .load import MANIFEST_FILE, load_manifest, parse_manifest
from .model import (
    API_VERSION,
    Manifest,
    Metadata,
    Resources,
    Route,
    Scaling,
    Secret,
    Spec,
    StaticSite,
)
from .schema import json_schema

__all__ = [
    "API_VERSION",
    "MANIFEST_FILE",
    "Manifest",
    "Metadata",
    "Resources",
    "Route",
    "Scaling",
    "Secret",
    "Spec",
    "StaticSite",
    "content_hash",
    "iter_app_files",
    "json_schema",
    "load_manifest",
    "manifest_json",
    "parse_manifest",
]
