"""The SageMaker training contract: ``/opt/ml/input``, ``/opt/ml/model``, ``/opt/ml/checkpoints``.

The job runs ``python -m kubesage.runtime sagemaker_training`` (the definition's
``ContainerEntrypoint``) on every host. It reads:

- ``input/config/hyperparameters.json``: parameter values, as text;
- ``input/config/resourceconfig.json``: ``current_host`` and ``hosts``; with several hosts (or
  ``KUBESAGE_PROCS_PER_NODE`` > 1) the same entry point is re-run under torchrun, the first
  host being the master;
- ``input/data/<channel>``: input artifacts (S3) and data mounts (FSx for Lustre);
- environment: ``KUBESAGE_ENTRY`` (the component), ``KUBESAGE_INPUTS`` (input -> folder inside a
  ``model.tar.gz``), ``KUBESAGE_MOUNTS`` (declared mount path -> channel folder).

Each output artifact is written to ``model/<name>`` (SageMaker uploads ``model/`` as
``model.tar.gz``); returns, metrics and metadata to ``output/data/kubesage-result.json``; a
failure's reason to ``output/failure``. ``/opt/ml/checkpoints`` survives spot interruptions and
is the component's ``KUBESAGE_CHECKPOINT_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from kubesage.runtime.context import CHECKPOINT_ENV, world
from kubesage.runtime.distributed import Layout, inside_worker, launch
from kubesage.runtime.invoke import Invocation, invoke, load_component
from kubesage.runtime.sagemaker_processing import finish, open_input, root, typed_parameters

MASTER_PORT = 29500


def layout() -> Layout:
    """This host's place in the job, from ``resourceconfig.json``."""
    path = os.path.join(root(), "input", "config", "resourceconfig.json")
    hosts, current = ["algo-1"], "algo-1"
    if os.path.exists(path):
        with open(path) as f:
            config = json.load(f)
        hosts, current = sorted(config["hosts"]), config["current_host"]
    procs = int(os.environ.get("KUBESAGE_PROCS_PER_NODE", "1"))
    return Layout(len(hosts), procs, hosts.index(current), hosts[0], MASTER_PORT)


def _run() -> None:
    base = root()
    entry = os.environ["KUBESAGE_ENTRY"]
    with open(os.path.join(base, "input", "config", "hyperparameters.json")) as f:
        texts = {k: str(v) for k, v in json.load(f).items()}
    mounts = json.loads(os.environ.get("KUBESAGE_MOUNTS", "{}"))
    folders = json.loads(os.environ.get("KUBESAGE_INPUTS", "{}"))
    component = load_component(entry)
    inputs = {
        name: open_input(os.path.join(base, "input", "data", name), folder,
                         os.path.join(base, "kubesage-scratch", str(world().rank), name))
        for name, folder in folders.items()
    }
    outputs = {a.name: os.path.join(base, "model", a.name) for a in component.spec.outputs}
    result = invoke(component, Invocation(typed_parameters(entry, texts, mounts), inputs, outputs))
    if world().is_main:
        finish(result, outputs, os.path.join(base, "output", "data", "kubesage-result.json"))


def main(*args: str) -> None:
    checkpoints = os.path.join(root(), "checkpoints")
    if os.path.isdir(checkpoints):
        os.environ.setdefault(CHECKPOINT_ENV, checkpoints)
    here = layout()
    try:
        if here.world_size > 1 and not inside_worker():
            code = launch(here, ["kubesage.runtime", "sagemaker_training", *args])
            if code:
                raise SystemExit(code)
            return
        _run()
    except BaseException as e:
        if not inside_worker() or world().is_main:
            failure = os.path.join(root(), "output", "failure")
            os.makedirs(os.path.dirname(failure), exist_ok=True)
            with open(failure, "w") as f:
                f.write("".join(traceback.format_exception(e))[-1000:] if not isinstance(
                    e, SystemExit) else f"exit code {e.code}")
        print(f"kubesage: training failed: {e!r}", file=sys.stderr, flush=True)
        raise
