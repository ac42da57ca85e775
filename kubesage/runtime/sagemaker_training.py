"""The SageMaker training contract: ``/opt/ml/input``, ``/opt/ml/model``, ``/opt/ml/checkpoints``.

The job runs ``python -m kubesage.runtime sagemaker_training`` (the definition's
``ContainerEntrypoint``) on every host. It reads:

- ``input/config/hyperparameters.json``: parameter values, as text;
- ``input/config/resourceconfig.json``: ``current_host`` and ``hosts``; with several hosts (or
  ``KUBESAGE_PROCS_PER_NODE`` > 1) the same entry point is re-run under torchrun, the first
  host being the master;
- ``input/data/<channel>``: input artifacts (S3) and data mounts (FSx for Lustre);
- environment: ``KUBESAGE_ENTRY`` (the component), ``KUBESAGE_INPUTS`` (input -> folder inside a
  ``model.tar.gz``), ``KUBESAGE_METADATA`` (input from a processing step -> its output name; the
  step's result file is the channel ``<input>-metadata``), ``KUBESAGE_MOUNTS`` (declared mount
  path -> channel folder).

Each output artifact is written to ``model/<name>`` (SageMaker uploads ``model/`` as
``model.tar.gz``), its metadata to ``model/.kubesage/<name>.json``; returns, metrics and
metadata to ``output/data/kubesage-result.json``; a failure's reason to ``output/failure``.
``/opt/ml/checkpoints`` survives spot interruptions and is the component's
``KUBESAGE_CHECKPOINT_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback

from kubesage.runtime import COMMAND
from kubesage.runtime.context import CHECKPOINT_ENV, world
from kubesage.runtime.distributed import Layout, inside_worker, launch, leave_worker
from kubesage.runtime.invoke import Invocation, invoke, load_component
from kubesage.runtime.sagemaker_processing import (
    METADATA_DIR,
    METADATA_SUFFIX,
    finish,
    open_input,
    root,
    typed_parameters,
)

ENTRYPOINT = [*COMMAND, "sagemaker_training"]
ENTRY_ENV = "KUBESAGE_ENTRY"
INPUTS_ENV = "KUBESAGE_INPUTS"
METADATA_ENV = "KUBESAGE_METADATA"
MOUNTS_ENV = "KUBESAGE_MOUNTS"
PROCS_ENV = "KUBESAGE_PROCS_PER_NODE"
RESULT_FILE = "kubesage-result.json"  # in output/data
MASTER_PORT = 29500


def layout() -> Layout:
    """This host's place in the job, from ``resourceconfig.json``."""
    path = os.path.join(root(), "input", "config", "resourceconfig.json")
    hosts, current = ["algo-1"], "algo-1"
    if os.path.exists(path):
        with open(path) as f:
            config = json.load(f)
        hosts, current = sorted(config["hosts"]), config["current_host"]
    procs = int(os.environ.get(PROCS_ENV, "1"))
    return Layout(len(hosts), procs, hosts.index(current), hosts[0], MASTER_PORT)


def _run() -> None:
    base = root()
    entry = os.environ[ENTRY_ENV]
    with open(os.path.join(base, "input", "config", "hyperparameters.json")) as f:
        texts = {k: str(v) for k, v in json.load(f).items()}
    mounts = json.loads(os.environ.get(MOUNTS_ENV, "{}"))
    folders = json.loads(os.environ.get(INPUTS_ENV, "{}"))
    metadata = json.loads(os.environ.get(METADATA_ENV, "{}"))
    component = load_component(entry)
    scratch = tempfile.mkdtemp(prefix="kubesage-scratch-")  # /opt/ml belongs to root
    data = os.path.join(base, "input", "data")
    inputs = {
        name: open_input(
            os.path.join(data, name), folder,
            os.path.join(scratch, name),
            (_result_file(os.path.join(data, name + METADATA_SUFFIX)), metadata[name])
            if name in metadata else None)
        for name, folder in folders.items()
    }
    outputs = {a.name: os.path.join(base, "model", a.name) for a in component.spec.outputs}
    result = invoke(component, Invocation(typed_parameters(entry, texts, mounts), inputs, outputs))
    if world().is_main:
        finish(result, os.path.join(base, "output", "data", RESULT_FILE),
               os.path.join(base, "model", METADATA_DIR))


def _result_file(channel: str) -> str:
    """The result file a metadata channel delivered (the producing step's result output)."""
    found = [f for f in os.listdir(channel)] if os.path.isdir(channel) else []
    return os.path.join(channel, found[0]) if len(found) == 1 else os.path.join(channel, "result.json")


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
        leave_worker()
    except BaseException as e:
        if not inside_worker() or world().is_main:
            failure = os.path.join(root(), "output", "failure")
            os.makedirs(os.path.dirname(failure), exist_ok=True)
            with open(failure, "w") as f:
                f.write("".join(traceback.format_exception(e))[-1000:] if not isinstance(
                    e, SystemExit) else f"exit code {e.code}")
        print(f"kubesage: training failed: {e!r}", file=sys.stderr, flush=True)
        raise
