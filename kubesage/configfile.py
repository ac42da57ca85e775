"""Reading a target config file: one YAML mapping, with errors that name the file."""

from __future__ import annotations

from typing import Any

from kubesage.dsl.errors import KubesageError


def read_mapping(path: str, error: type[KubesageError]) -> dict[str, Any]:
    """The YAML mapping in ``path``; ``error`` (naming the file) when it is not valid YAML or
    not a mapping. An empty file is an empty mapping."""
    import yaml

    with open(path) as f:
        try:
            doc: Any = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise error(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise error(f"{path}: expected a mapping of settings, got {type(doc).__name__}")
    return doc
