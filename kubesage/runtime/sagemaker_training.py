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

A fused job (``kubesage.plan.fusion``) names its members in the hyperparameter
``kubesage.members`` and each member's layout in ``kubesage.member.<name>`` (JSON: ``entry``,
``inputs`` {input: [channel, folder]}, ``metadata`` {input: [channel, output]}, ``local``
{input: [member, output]}, ``param_from`` {parameter: [member, returned value]}, ``mounts``,
``env``, ``anchor``); a member's parameters are ``<member>.<parameter>``. The training member
(the anchor) writes where an unfused training job writes (``model/``, its result file) and runs
on every host, under torchrun when it has several processes; the others run in this process on
the first host, before it or after it, and write into ``output/data/<member>/<output>``
(uploaded as ``output.tar.gz``), metadata under ``output/data/.kubesage/<member>/``, results
in ``output/data/.kubesage-results/<member>.json``. Each member checkpoints into
``/opt/ml/checkpoints/<member>``; a finished member's outputs and result are kept there too
(``.kubesage-done/<member>``), so a job started again (a spot interruption, a retried step)
starts at the first member that had not finished.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import traceback
from typing import Any

from kubesage.runtime import COMMAND
from kubesage.runtime.context import CHECKPOINT_ENV, world
from kubesage.runtime.distributed import Layout, inside_worker, launch, leave_worker
from kubesage.runtime.invoke import Invocation, invoke, load_component
from kubesage.runtime.members import (
    DONE_DIR,
    MEMBER_FLAG,
    MEMBER_KEY,
    MEMBERS_KEY,
    RESULTS_DIR,
    Done,
    MemberRun,
    print_returns,
    result_of,
    run_members,
)
from kubesage.runtime.sagemaker_processing import (
    METADATA_DIR,
    METADATA_SUFFIX,
    finish,
    open_input,
    root,
    typed_parameters,
)
from kubesage.util.atomic import write_json_atomic

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
    fused = MEMBERS_KEY in _hyperparameters()
    if os.path.isdir(checkpoints) and not fused:
        os.environ.setdefault(CHECKPOINT_ENV, checkpoints)
    here = layout()
    try:
        if fused:
            run_fused(here, args)
            leave_worker()
            return
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


# -- fused jobs --------------------------------------------------------------------------------
def _hyperparameters() -> dict[str, str]:
    path = os.path.join(root(), "input", "config", "hyperparameters.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {k: str(v) for k, v in json.load(f).items()}


class _Fused:
    """Where the members of a fused training job read and write."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.base = root()
        self.names: list[str] = json.loads(texts[MEMBERS_KEY])
        self.layouts: dict[str, dict[str, Any]] = {
            m: json.loads(texts[MEMBER_KEY + m]) for m in self.names}
        self.anchor = next((m for m in self.names if self.layouts[m].get("anchor")), "")
        self.texts = texts
        self.scratch = tempfile.mkdtemp(prefix="kubesage-scratch-")
        self.checkpoints = os.path.join(self.base, "checkpoints")

    def outputs(self, member: str, component: Any) -> dict[str, str]:
        where = (os.path.join(self.base, "model") if member == self.anchor
                 else os.path.join(self.base, "output", "data", member))
        return {a.name: os.path.join(where, a.name) for a in component.spec.outputs}

    def result_file(self, member: str) -> str:
        data = os.path.join(self.base, "output", "data")
        return (os.path.join(data, RESULT_FILE) if member == self.anchor
                else os.path.join(data, RESULTS_DIR, member + ".json"))

    def metadata_dir(self, member: str) -> str:
        return (os.path.join(self.base, "model", METADATA_DIR) if member == self.anchor
                else os.path.join(self.base, "output", "data", METADATA_DIR, member))

    def member(self, name: str) -> MemberRun:
        layout = self.layouts[name]
        entry = layout["entry"]
        component = load_component(entry)
        prefix = name + "."
        texts = {k[len(prefix):]: v for k, v in self.texts.items() if k.startswith(prefix)}
        data = os.path.join(self.base, "input", "data")
        inputs = {}
        for input_name, (channel, folder) in layout.get("inputs", {}).items():
            meta = layout.get("metadata", {}).get(input_name)
            source = ((_result_file(os.path.join(data, meta[0])), meta[1]) if meta else None)
            inputs[input_name] = open_input(os.path.join(data, channel), folder,
                                            os.path.join(self.scratch, name, input_name), source)
        return MemberRun(
            name, component, typed_parameters(entry, texts, layout.get("mounts", {})),
            {k: (v[0], v[1]) for k, v in layout.get("param_from", {}).items()}, inputs,
            {k: (v[0], v[1]) for k, v in layout.get("local", {}).items()},
            self.outputs(name, component), dict(layout.get("env", {})),
            os.path.join(self.checkpoints, name) if os.path.isdir(self.checkpoints) else "")

    def report(self, member: MemberRun, done: Done) -> None:
        if not world().is_main:
            return
        finish(done.result, self.result_file(member.name), self.metadata_dir(member.name))
        write_json_atomic(self.result_file(member.name), done.to_dict(), sort_keys=True)

    def from_disk(self, name: str) -> Done:
        """A member's result as this job's files hold it (another process ran it)."""
        with open(self.result_file(name)) as f:
            doc = json.load(f)
        component = load_component(self.layouts[name]["entry"])
        return Done(result_of(doc), self.outputs(name, component), doc.get("started", 0.0),
                    doc.get("ended", 0.0))

    def keep(self, name: str) -> None:
        """Keep a finished member's outputs and result with the checkpoints."""
        if not os.path.isdir(self.checkpoints):
            return
        done = self.from_disk(name)
        target = os.path.join(self.checkpoints, DONE_DIR, name)
        shutil.rmtree(target, ignore_errors=True)
        for output, path in done.outputs.items():
            if os.path.exists(path):
                shutil.copytree(path, os.path.join(target, "outputs", output))
        os.makedirs(target, exist_ok=True)
        shutil.copy2(self.result_file(name), os.path.join(target, "result.json"))
        with open(os.path.join(target, "complete"), "w") as f:
            f.write(name)

    def restored(self) -> dict[str, Done]:
        """Members a previous start of this job finished: their outputs put back in place."""
        found: dict[str, Done] = {}
        for name in self.names:
            kept = os.path.join(self.checkpoints, DONE_DIR, name)
            if not os.path.exists(os.path.join(kept, "complete")):
                break
            component = load_component(self.layouts[name]["entry"])
            for output, path in self.outputs(name, component).items():
                source = os.path.join(kept, "outputs", output)
                if os.path.isdir(source):
                    shutil.copytree(source, path, dirs_exist_ok=True)
            os.makedirs(os.path.dirname(self.result_file(name)), exist_ok=True)
            shutil.copy2(os.path.join(kept, "result.json"), self.result_file(name))
            found[name] = self.from_disk(name)
        return found


def run_fused(here: Layout, args: tuple[str, ...]) -> None:
    """Run the members of a fused training job: the anchor on every host (under torchrun when it
    has several processes), the others on the first host."""
    job = _Fused(_hyperparameters())
    if inside_worker():  # torchrun started this process for the anchor
        known = {m: job.from_disk(m) for m in job.names[:job.names.index(job.anchor)]}
        run_members([job.member(job.anchor)], job.report, known)
        return
    known = job.restored()  # every host gets the checkpoints: all skip the same members
    for name in job.names:
        if name in known:
            print(f"kubesage: {name} done already (kept with the job's checkpoints)", flush=True)
            if here.node_rank == 0:  # its values are this job's metrics too
                print_returns(name, known[name].result)
            continue
        if name == job.anchor and here.world_size > 1:
            code = launch(here, ["kubesage.runtime", "sagemaker_training", MEMBER_FLAG, name])
            if code:
                raise SystemExit(code)
            if here.node_rank:
                return  # the members after a multi-node anchor run on the first host
            known[name] = job.from_disk(name)
        elif here.node_rank:
            if name == job.anchor:
                raise SystemExit(f"kubesage: {name} runs on several hosts but one process")
            continue  # only the first host runs the members around the anchor
        else:
            known = run_members([job.member(name)], job.report, known)
        job.keep(name)
