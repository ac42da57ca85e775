"""The local contract: a JSON task file in, a JSON result file out.

The local runner (Docker or subprocess) writes the task file with resolved values and
absolute artifact paths (identical inside and outside the container); the result file is
written atomically, so a step that dies leaves none. A distributed step gets its layout as
``PET_*`` variables (the Kubeflow Trainer form) and is started under torchrun on each node.

``local --await TASK MODULE...`` is a warm start: the container is started while the step's
upstream steps still run, imports ``MODULE...`` (torch, the component's module), then waits
for ``TASK`` to appear (the runner writes it atomically) and runs it like ``local TASK``. The
step's environment (checkpoint folder, run ID) travels in the task file, since it is known only
when the step starts.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

from kubesage.runtime.context import world
from kubesage.runtime.distributed import Layout, inside_worker, launch, leave_worker
from kubesage.runtime.invoke import Invocation, invoke, load_component
from kubesage.util.atomic import write_json_atomic

TASK_FILE = "task.json"  # in the step's folder: what to run, written by the runner
RESULT_FILE = "result.json"  # beside it: returns, artifact metadata, metrics (written atomically)
TRACEBACK_FILE = "traceback.txt"  # beside it when the component raised: where, in full
PRELOAD_SUFFIX = ".preload"  # beside the task file: import the heavy modules now
AWAIT_POLL_S = (0.005, 0.05)  # for the first seconds (a short upstream step), then
AWAIT_FAST_S = 5.0
# A runner that died leaves its warm containers behind: they give up after this. One that
# gives up while its upstream step still runs costs only a cold start (the runner checks).
AWAIT_LIMIT_S = 1800.0


def task_file(entry: str, call: Invocation, result_path: str,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """The document the runner writes for one step."""
    return {
        "entry": entry,
        "parameters": call.parameters,
        "inputs": {k: {"path": p, "metadata": m} for k, (p, m) in call.inputs.items()},
        "outputs": call.outputs,
        "result": result_path,
        "env": dict(env or {}),
    }


def await_task(task_path: str, preload: list[str], limit_s: float = AWAIT_LIMIT_S) -> None:
    """Wait until ``task_path`` exists (exit 3 after ``limit_s``); import ``preload`` once
    ``task_path.preload`` exists."""
    start = time.monotonic()
    while not os.path.exists(task_path):
        if preload and os.path.exists(task_path + PRELOAD_SUFFIX):
            for module in preload:
                try:
                    importlib.import_module(module)
                except Exception as e:  # the step itself reports it when it imports the module
                    print(f"kubesage: preloading {module} failed: {e}", file=sys.stderr)
            preload = []
            continue
        waited = time.monotonic() - start
        if waited > limit_s:
            print(f"kubesage: no task at {task_path} after {limit_s:.0f} s", file=sys.stderr)
            sys.exit(3)
        time.sleep(AWAIT_POLL_S[waited > AWAIT_FAST_S])


def main(*argv: str) -> None:
    if argv and argv[0] == "--await":
        task_path = argv[1]
        await_task(task_path, list(argv[2:]))
    else:
        (task_path,) = argv
    layout = Layout.from_env()
    if layout.world_size > 1 and not inside_worker():
        code = launch(layout, ["kubesage.runtime", "local", task_path])
        if code:
            sys.exit(code)
        return
    with open(task_path) as f:
        doc = json.load(f)
    os.environ.update(doc.get("env", {}))
    call = Invocation(
        parameters=doc["parameters"],
        inputs={k: (v["path"], v["metadata"]) for k, v in doc["inputs"].items()},
        outputs=doc["outputs"],
    )
    component = load_component(doc["entry"])
    try:
        result = invoke(component, call)
    except Exception as e:  # the component's own failure: one line here, the traceback beside
        where = os.path.join(os.path.dirname(doc["result"]), TRACEBACK_FILE)
        if world().is_main:
            try:
                with open(where, "w") as f:
                    f.write("".join(traceback.format_exception(e)))
            except OSError:  # a full disk, say: the one line below still says what happened
                where = "not kept: " + where
        hint = ("; the disk that holds the step's outputs is full: free space there, or point "
                "the target config's store at a bigger disk"
                if isinstance(e, OSError) and e.errno == errno.ENOSPC else "")
        print(f"kubesage: {component.spec.name} failed: {type(e).__name__}: {e}{hint} "
              f"(traceback: {where})", file=sys.stderr, flush=True)
        sys.exit(1)
    if world().is_main:  # rank 0 reports for the whole step
        write_json_atomic(doc["result"], result.to_dict())
    leave_worker()
