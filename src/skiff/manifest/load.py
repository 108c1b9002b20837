"""Read skiff.yaml into a Manifest. Every way it can fail (no file, bad YAML,
not a mapping, invalid fields) ends as one ManifestError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ManifestError
from .errors import problems_from, raise_problems, show
from .model import Manifest

MANIFEST_FILE = "skiff.yaml"


def load_manifest(path: str | Path) -> Manifest:
    """Load and validate ``path``: a skiff.yaml, or a directory holding one.
    ``spec.static.dir`` must exist relative to the file's directory."""
    file = Path(path)
    if file.is_dir():
        file = file / MANIFEST_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise_problems(str(file), [((), "file not found")])
    except UnicodeDecodeError:
        raise_problems(str(file), [((), "not a UTF-8 text file")])
    except OSError as exc:
        raise_problems(str(file), [((), f"cannot read file ({exc.strerror or exc})")])
    return parse_manifest(_parse_yaml(text, str(file)), source=str(file), base_dir=file.parent)


def parse_manifest(data: object, *, source: str = MANIFEST_FILE,
                   base_dir: Path | None = None) -> Manifest:
    """Validate already-parsed YAML. ``source`` names the file in messages;
    with ``base_dir``, the static directory must exist under it."""
    if not isinstance(data, dict):
        got = "an empty document" if data is None else show(data)
        raise_problems(source, [((), f"expected a mapping with apiVersion, kind, metadata "
                                     f"and spec, got {got}")])
    try:
        return Manifest.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise_problems(source, problems_from(exc, Manifest))


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML keeps the last one,
    which silently drops half of a doubled `env:` block."""


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue  # `<<:` merges may legitimately be overridden
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {show(key)}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                        _mapping_without_duplicates)


def _parse_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        problem = exc.problem or exc.context or "invalid YAML"
        message = f"{where}: invalid YAML: {problem}"
        raise _yaml_error(message, file, problem, mark) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(f"{file}: invalid YAML: {exc}", file, str(exc), None) from None


def _yaml_error(message: str, file: str, problem: str, mark: Any) -> Exception:
    error: dict[str, Any] = {"path": "", "message": f"invalid YAML: {problem}"}
    if mark is not None:
        error.update(line=mark.line + 1, column=mark.column + 1)
    return ManifestError(message, file=file, errors=[error])
