"""The local contract: a JSON task file in, a JSON result file out.

The local runner (Docker or subprocess) writes the task file with resolved values and
absolute artifact paths (identical inside and outside the container); the result file is
written atomically, so a step that dies leaves none. A distributed step gets its layout as
``PET_*`` variables (the Kubeflow Trainer form) and is started under torchrun on each node.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from kubesage.fsutil import write_json_atomic
from kubesage.runtime.context import world
from kubesage.runtime.distributed import Layout, inside_worker, launch
from kubesage.runtime.invoke import Invocation, invoke, load_component


def task_file(entry: str, call: Invocation, result_path: str) -> dict[str, Any]:
    """The document the runner writes for one step."""
    return {
        "entry": entry,
        "parameters": call.parameters,
        "inputs": {k: {"path": p, "metadata": m} for k, (p, m) in call.inputs.items()},
        "outputs": call.outputs,
        "result": result_path,
    }


def main(task_path: str) -> None:
    layout = Layout.from_env()
    if layout.world_size > 1 and not inside_worker():
        code = launch(layout, ["kubesage.runtime", "local", task_path])
        if code:
            sys.exit(code)
        return
    with open(task_path) as f:
        doc = json.load(f)
    call = Invocation(
        parameters=doc["parameters"],
        inputs={k: (v["path"], v["metadata"]) for k, v in doc["inputs"].items()},
        outputs=doc["outputs"],
    )
    result = invoke(load_component(doc["entry"]), call)
    if not world().is_main:
        return  # rank 0 reports for the whole step
    write_json_atomic(doc["result"], result.to_dict())
