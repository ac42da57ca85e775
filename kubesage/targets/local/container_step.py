"""Run a container component (imported Kubeflow YAML) locally: its own command line, resolved.

Paths are the run store's, identical inside and outside the container. An output artifact
``y`` is the file or folder ``y`` that the command writes inside the artifact's folder; output
parameters are read back from the files the command wrote them to, and typed.
"""

from __future__ import annotations

import os
from typing import Any

from kubesage.dsl.container import Placeholder, expand
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.interface import ComponentSpec
from kubesage.dsl.types import parse_value, text_form
from kubesage.util.atomic import write_json_atomic


def command_line(spec: ComponentSpec, params: dict[str, Any], inputs: dict[str, str],
                 partial: dict[str, str], step_dir: str) -> tuple[list[str], list[str], dict[str, str]]:
    """``(command, args, output parameter files)`` for one attempt.

    ``inputs`` maps each input artifact to its path, ``partial`` each output to its folder.
    """
    assert spec.container is not None
    files = {r.name: os.path.join(step_dir, "parameters", r.name) for r in spec.returns}
    for path in files.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.remove(path)

    def resolve(ph: Placeholder) -> str:
        if ph.direction == "inputs" and ph.kind == "parameters":
            if params.get(ph.name) is None:
                raise KubesageError(f"component '{spec.name}': its command line needs parameter "
                                    f"'{ph.name}', which has no value; pass {ph.name}=...")
            return text_form(params[ph.name])
        if ph.direction == "inputs":
            return inputs[ph.name]
        if ph.kind == "artifacts":
            return os.path.join(partial[ph.name], ph.name)
        return files[ph.name]

    def present(name: str) -> bool:
        return params.get(name) is not None or name in inputs

    command = [str(x) for x in expand(spec.container.command, resolve, present)]
    args = [str(x) for x in expand(spec.container.args, resolve, present)]
    return command, args, files


def collect(spec: ComponentSpec, partial: dict[str, str], files: dict[str, str],
            result_path: str) -> str:
    """Check what the command wrote and write the step's result file; a problem, or ``""``."""
    for name, folder in partial.items():
        if not os.path.exists(os.path.join(folder, name)):
            return (f"component '{spec.name}' exited 0 but did not write output artifact '{name}' "
                    f"at {os.path.join(folder, name)}")
    returns: dict[str, Any] = {}
    for r in spec.returns:
        if not os.path.isfile(files[r.name]):
            return f"component '{spec.name}' did not write output parameter '{r.name}' ({files[r.name]})"
        with open(files[r.name]) as f:
            text = f.read()
        try:
            returns[r.name] = parse_value(r.type, text)
        except ValueError:
            return f"component '{spec.name}': output parameter '{r.name}' is not a {r.type}: {text[:80]!r}"
    write_json_atomic(result_path, {"returns": returns, "artifacts": {n: {} for n in partial},
                                    "metrics": {}, "series": {}})
    return ""
