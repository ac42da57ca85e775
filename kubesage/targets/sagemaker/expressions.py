"""Pipeline expressions inside a definition: ``{"Get": ...}``, ``{"Std:Join": ...}``,
``{"Std:JsonGet": ...}``. Validation replaces them with typed placeholders; the local executor
evaluates them against parameters, execution variables and the properties of finished steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubesage.dsl.types import text_form

FUNCTIONS = ("Get", "Std:Join", "Std:JsonGet")
_INDEX = re.compile(r"\[(?:'([^']*)'|(\d+))\]")


def is_expression(value: Any) -> bool:
    """A dict with exactly one key naming a pipeline function."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in FUNCTIONS


def references(value: Any) -> list[str]:
    """Every ``Get`` path inside ``value`` (``Parameters.x``, ``Steps.train.ModelArtifacts...``)."""
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if set(v) == {"Get"} and isinstance(v["Get"], str):
                found.append(v["Get"])
                return
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    return found


def step_of(path: str) -> str | None:
    """``Steps.train.ModelArtifacts...`` -> ``train``."""
    if path.startswith("Steps."):
        return path.split(".", 2)[1]
    return None


def split_path(path: str) -> list[str | int]:
    """``ProcessingOutputConfig.Outputs['data'].S3Output.S3Uri`` -> keys, in order."""
    keys: list[str | int] = []
    for part in path.split("."):
        head = part.split("[", 1)[0]
        if head:
            keys.append(head)
        for name, number in _INDEX.findall(part):
            keys.append(int(number) if number else name)
    return keys


def to_text(value: Any) -> str:
    """How ``Std:Join`` renders a value: kubesage's text form (JSON spelling for booleans)."""
    return text_form(value)


class Evaluator:
    """Resolves expressions at run time.

    ``lookup(path)`` answers a ``Get`` (``Parameters.x``, ``Execution.PipelineExecutionId``,
    ``Steps.s.<property>``); ``property_file(step, name)`` returns a parsed property file.
    """

    def __init__(self, lookup: Callable[[str], Any],
                 property_file: Callable[[str, str], Any]) -> None:
        self.lookup = lookup
        self.property_file = property_file

    def __call__(self, value: Any) -> Any:
        if is_expression(value):
            (fn, arg), = value.items()
            if fn == "Get":
                return self.lookup(arg)
            if fn == "Std:Join":
                return str(arg["On"]).join(to_text(self(v)) for v in arg["Values"])
            return self._json_get(arg)
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value

    def _json_get(self, arg: dict[str, Any]) -> Any:
        ref = arg["PropertyFile"]["Get"]  # Steps.<step>.PropertyFiles.<name>
        _, step, _, name = ref.split(".", 3)
        doc = self.property_file(step, name)
        for key in split_path(self(arg["Path"])):
            try:
                doc = doc[key]
            except (KeyError, IndexError, TypeError):
                raise KeyError(f"JsonGet: path {arg['Path']!r} not found in property file "
                               f"'{name}' of step '{step}'") from None
        return doc
