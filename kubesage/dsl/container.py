"""Container components: a team's own image and command line instead of a Python function.

Imported from the Kubeflow component YAML teams already share (``kubesage.load_kfp_component``).
The command line keeps Kubeflow's placeholders, which every target resolves its own way:

- ``{{$.inputs.parameters['x']}}``: the value of parameter ``x`` (JSON for lists, dicts, bools);
- ``{{$.inputs.artifacts['x'].path}}`` (or ``.uri``): where input artifact ``x`` lies;
- ``{{$.outputs.artifacts['y'].path}}`` (or ``.uri``): where to write output artifact ``y``;
- ``{{$.outputs.parameters['n'].output_file}}``: a file to write output parameter ``n`` to;
- ``{"IfPresent": {"InputName": "x", "Then": [...], "Else": [...]}}`` and
  ``{"Concat": [...]}`` (JSON strings, as Kubeflow writes them).

An artifact is a folder in kubesage: an imported component's output ``y`` is the file (or
folder) ``y`` inside its artifact folder, so it reads the same on every target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesage.dsl.errors import DefinitionError

_PLACEHOLDER = re.compile(
    r"\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](?:\.(path|uri|output_file))?\}\}")
EXECUTOR_INPUT = "{{$}}"


@dataclass(frozen=True)
class ContainerSpec:
    """Image, command (replaces the image's entry point; may be empty), arguments and env."""

    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "command": list(self.command), "args": list(self.args),
                "env": dict(self.env)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContainerSpec:
        return cls(d["image"], tuple(d.get("command", ())), tuple(d.get("args", ())),
                   tuple(sorted(d.get("env", {}).items())))


@dataclass(frozen=True)
class Placeholder:
    """One ``{{$.inputs...}}`` / ``{{$.outputs...}}`` reference."""

    direction: str  # "inputs" | "outputs"
    kind: str  # "parameters" | "artifacts"
    name: str
    attribute: str  # "", "path", "uri" or "output_file"


def placeholders(items: tuple[str, ...] | list[str]) -> list[Placeholder]:
    """Every placeholder ``items`` reference, IfPresent and Concat included."""
    found: list[Placeholder] = []
    for item in items:
        for m in _PLACEHOLDER.finditer(item if isinstance(item, str) else json.dumps(item)):
            found.append(Placeholder(m[1], m[2], m[3], m[4] or ""))
    return found


def expand(items: tuple[Any, ...] | list[Any], resolve: Callable[[Placeholder], Any],
           present: Callable[[str], bool]) -> list[Any]:
    """The command line with every placeholder replaced by ``resolve(placeholder)``.

    ``present(name)`` says whether an optional input has a value (``IfPresent``). ``resolve``
    may return a string or a target's own expression object; an item that is exactly one
    placeholder becomes that object, so targets can pass pipeline expressions through.
    ``IfPresent`` and ``Concat`` come as JSON strings at the top and as mappings inside each
    other, as Kubeflow writes them; ``Then``/``Else`` may be one item or a list.
    """
    out: list[Any] = []
    for item in items:
        doc = _structure(item)
        if doc is None:
            out.append(_substitute(item, resolve))
        elif "IfPresent" in doc:
            spec = doc["IfPresent"]
            branch = spec.get("Then", []) if present(spec["InputName"]) else spec.get("Else", [])
            out += expand(branch if isinstance(branch, list) else [branch], resolve, present)
        else:
            parts = expand(doc["Concat"], resolve, present)
            out.append(parts[0] if len(parts) == 1 else _concat(parts))
    return out


def _structure(item: Any) -> dict[str, Any] | None:
    """An ``IfPresent``/``Concat`` mapping (given as one, or as its JSON text); else None."""
    if isinstance(item, str) and item.startswith("{") and not item.startswith("{{"):
        try:
            item = json.loads(item)
        except json.JSONDecodeError:
            return None
    if isinstance(item, dict):
        if len(item) == 1 and ("IfPresent" in item or "Concat" in item):
            return item
        raise DefinitionError(f"unknown command-line structure {json.dumps(item)[:80]}; "
                              "Kubeflow's are IfPresent and Concat")
    return None


def _substitute(item: str, resolve: Callable[[Placeholder], Any]) -> Any:
    whole = _PLACEHOLDER.fullmatch(item)
    if whole:
        return resolve(Placeholder(whole[1], whole[2], whole[3], whole[4] or ""))
    parts: list[Any] = []
    last = 0
    for m in _PLACEHOLDER.finditer(item):
        parts += [item[last:m.start()], resolve(Placeholder(m[1], m[2], m[3], m[4] or ""))]
        last = m.end()
    parts.append(item[last:])
    return _concat([p for p in parts if p != ""]) if len(parts) > 1 else item


def _concat(parts: list[Any]) -> Any:
    if all(isinstance(p, str) for p in parts):
        return "".join(parts)
    return Concat(tuple(parts))


@dataclass(frozen=True)
class Concat:
    """Text joined from strings and target expressions (a target turns it into its own join)."""

    parts: tuple[Any, ...]


def check_placeholders(name: str, container: ContainerSpec, inputs: set[str],
                       outputs: set[str]) -> None:
    """Refuse command lines a target could not resolve: unknown names, the executor input."""
    items = [*container.command, *container.args]
    if any(EXECUTOR_INPUT in item for item in items):
        raise DefinitionError(
            f"component '{name}' reads the Kubeflow executor input ({EXECUTOR_INPUT}), which only "
            "kfp's own Python runtime understands; import container components (command and args "
            "with input and output placeholders), or write it as a kubesage @component")
    for ph in placeholders(items):
        known = inputs if ph.direction == "inputs" else outputs
        if ph.name not in known:
            raise DefinitionError(
                f"component '{name}': its command line names {ph.direction[:-1]} '{ph.name}', "
                f"which its interface does not declare (declared: {', '.join(sorted(known)) or 'none'})")
