"""The SageMaker processing contract: ``/opt/ml/processing/{input,output}/<name>``.

The compiled step starts ``python -m kubesage.runtime sagemaker_processing`` with arguments::

    --entry components.evaluate:evaluate      the component to call
    --input model=model                       input artifact at input/<name>; after '=' the
                                              folder inside a training job's model.tar.gz
    --metadata data=data                      input ``data`` comes from a processing step: its
                                              metadata is that step's result file, delivered at
                                              input/data-metadata, under its output ``data``
    --mount /fsx=/opt/ml/processing/mounts/fsx   a data mount delivered from S3: parameter
                                              values under /fsx are rewritten onto it
    --param epochs 8                          parameter values, as text (typed by the spec)

Outputs go to ``output/<name>``; the step's returned values, metrics and artifact metadata to
``output/kubesage-result/result.json`` (conditions read it through a PropertyFile).

A fused job (several steps in one job, ``kubesage.plan.fusion``) gives each member its own
arguments, after ``--member NAME``::

    --member evaluate --entry components.evaluate:evaluate
    --input data=preprocess-data:            input ``data`` from channel input/preprocess-data,
                                              after ':' the folder inside a model.tar.gz
    --metadata data=preprocess-data-metadata:data   its metadata: that channel's result.json
    --local model=train:model                 input ``model`` is member ``train``'s output
    --param epochs 8 / --param-from accuracy evaluate:output   a value / an earlier return
    --mount /fsx=/opt/ml/processing/mounts/fsx  --env NAME=VALUE

Members run in order in this process (``kubesage.runtime.members``); every member's outputs
go to ``output/kubesage-members/<member>/<output>``, its result to
``output/kubesage-members/<member>/kubesage-result/result.json``. An output
artifact holds exactly what the component wrote, on every target: its metadata travels beside
it, never inside (a training job's in ``model.tar.gz`` under ``.kubesage/<name>.json``).
The helpers here are shared with the training contract (``sagemaker_training``).
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from typing import Any

from kubesage.dsl.types import parse_value
from kubesage.runtime import COMMAND
from kubesage.runtime.context import BATCH_PHASE_ENV, batch_phase, world
from kubesage.runtime.invoke import Invocation, Result, invoke, load_component
from kubesage.runtime.members import MEMBER_FLAG, MEMBERS_OUTPUT, MemberRun, run_members
from kubesage.util.atomic import write_json_atomic

ROOT_ENV = "KUBESAGE_SAGEMAKER_ROOT"  # /opt/ml unless a test runs the contract in place
ENTRYPOINT = [*COMMAND, "sagemaker_processing"]
PROCESSING = "/opt/ml/processing"
RESULT_OUTPUT = "kubesage-result"  # every processing step: returns, metrics, artifact metadata
RESULT_FILE = "result.json"
METADATA_DIR = ".kubesage"  # in a training job's model.tar.gz: <output name>.json per output
METADATA_SUFFIX = "-metadata"  # input <name>-metadata: the producing step's result output


def root() -> str:
    """``/opt/ml`` (or ``$KUBESAGE_SAGEMAKER_ROOT``)."""
    return os.environ.get(ROOT_ENV, "/opt/ml")


def rewrite_mounts(value: Any, mounts: dict[str, str]) -> Any:
    """A path under a mount's declared path (``/fsx/digits``) -> the same path where SageMaker
    delivered it (``/opt/ml/processing/mounts/fsx/digits``)."""
    if isinstance(value, str):
        for target, local in mounts.items():
            base = target.rstrip("/")
            if value == base or value.startswith(base + "/"):
                return local.rstrip("/") + value[len(base):]
    return value


def typed_parameters(entry: str, texts: dict[str, str], mounts: dict[str, str]) -> dict[str, Any]:
    """Parameter texts (container arguments, hyperparameters) -> values of the spec's types."""
    spec = load_component(entry).spec
    values: dict[str, Any] = {}
    for name, text in texts.items():
        param = spec.parameter(name)
        if param is None:
            raise SystemExit(f"kubesage: component {spec.name} has no parameter '{name}'")
        value = parse_value(param.type, text)
        values[name] = rewrite_mounts(value, mounts)
    return values


def open_input(path: str, folder: str, scratch: str,
               metadata_from: tuple[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """(artifact folder, metadata) of an input as delivered: a folder, or a training job's
    ``model.tar.gz`` holding one folder per output (``folder`` picks one, its metadata is in
    ``.kubesage/<folder>.json``). ``metadata_from``: (result file of the producing processing
    step, its output's name)."""
    archives = [f for f in os.listdir(path) if f.endswith(".tar.gz")] if os.path.isdir(path) else []
    metadata: dict[str, Any] = {}
    if folder:  # a training job's output: unpack model.tar.gz, pick the output's folder
        for archive in archives:
            _extract(os.path.join(path, archive), scratch)
        path = os.path.join(scratch, folder)
        metadata = _read(os.path.join(scratch, METADATA_DIR, folder + ".json"))
    elif metadata_from is not None:
        result_file, output = metadata_from
        metadata = _read(result_file).get("artifacts", {}).get(output, {})
    return path, metadata


def _read(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _extract(archive: str, dest: str) -> None:
    """Unpack a ``.tar.gz``, refusing members that would land outside ``dest``."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(dest, filter="data")
            return
        root = os.path.realpath(dest)
        for member in tar.getmembers():
            target = os.path.realpath(os.path.join(dest, member.name))
            if not (member.isfile() or member.isdir()) or not target.startswith(root + os.sep):
                raise ValueError(f"{archive}: unsafe member {member.name!r}")
        tar.extractall(dest)


def finish(result: Result, result_path: str, metadata_dir: str | None = None) -> None:
    """Write the step's result file (atomically); with ``metadata_dir`` (a training job's, in
    ``model/``) also each output's metadata there, to travel inside ``model.tar.gz``."""
    if metadata_dir is not None:
        os.makedirs(metadata_dir, exist_ok=True)
        for name, metadata in result.artifacts.items():
            with open(os.path.join(metadata_dir, name + ".json"), "w") as f:
                json.dump(metadata, f, sort_keys=True)
    write_json_atomic(result_path, result.to_dict(), sort_keys=True)


def _parse(args: tuple[str, ...]) -> tuple[str, dict[str, str], dict[str, str], dict[str, str],
                                           dict[str, str]]:
    entry = ""
    inputs: dict[str, str] = {}
    metadata: dict[str, str] = {}
    mounts: dict[str, str] = {}
    params: dict[str, str] = {}
    items = list(args)
    while items:
        flag = items.pop(0)
        if flag == "--entry":
            entry = items.pop(0)
        elif flag in ("--input", "--mount", "--metadata"):
            key, _, value = items.pop(0).partition("=")
            {"--input": inputs, "--mount": mounts, "--metadata": metadata}[flag][key] = value
        elif flag == "--param":
            name = items.pop(0)
            params[name] = items.pop(0)
        else:
            raise SystemExit(f"kubesage sagemaker_processing: unknown argument {flag!r}")
    if not entry:
        raise SystemExit("kubesage sagemaker_processing: --entry module:component is required")
    return entry, inputs, metadata, mounts, params


def main(*args: str) -> None:
    if MEMBER_FLAG in args:
        run_fused(args)
        return
    entry, input_folders, metadata, mounts, texts = _parse(args)
    base = os.path.join(root(), "processing")
    scratch = tempfile.mkdtemp(prefix="kubesage-scratch-")  # /opt/ml belongs to root
    component = load_component(entry)
    inputs = {
        name: open_input(
            os.path.join(base, "input", name), folder, os.path.join(scratch, name),
            (os.path.join(base, "input", name + METADATA_SUFFIX, RESULT_FILE), metadata[name])
            if name in metadata else None)
        for name, folder in input_folders.items()
    }
    phase = batch_phase()
    if phase is not None and phase.name == "collect":  # it reads only the inputs it was given
        for a in component.spec.inputs:
            inputs.setdefault(a.name, (os.path.join(scratch, "not-delivered", a.name), {}))
    outputs = {a.name: os.path.join(base, "output", a.name) for a in component.spec.outputs}
    call = Invocation(typed_parameters(entry, texts, mounts), inputs, outputs)
    result = invoke(component, call)
    if world().is_main:
        finish(result, os.path.join(base, "output", RESULT_OUTPUT, RESULT_FILE))


# -- fused jobs --------------------------------------------------------------------------------
def _sections(args: tuple[str, ...]) -> list[dict[str, Any]]:
    """The arguments of each member, parsed (see the module's docstring)."""
    sections: list[dict[str, Any]] = []
    items = list(args)
    pairs = {"--input": "inputs", "--metadata": "metadata", "--local": "local",
             "--mount": "mounts", "--env": "env"}
    while items:
        flag = items.pop(0)
        if flag == MEMBER_FLAG:
            sections.append({"name": items.pop(0), "entry": "", "inputs": {}, "metadata": {},
                             "local": {}, "mounts": {}, "env": {}, "params": {}, "from": {}})
        elif not sections:
            raise SystemExit(f"kubesage sagemaker_processing: {flag!r} before {MEMBER_FLAG}")
        elif flag == "--entry":
            sections[-1]["entry"] = items.pop(0)
        elif flag in pairs:
            key, _, value = items.pop(0).partition("=")
            sections[-1][pairs[flag]][key] = value
        elif flag in ("--param", "--param-from"):
            name = items.pop(0)
            sections[-1]["params" if flag == "--param" else "from"][name] = items.pop(0)
        else:
            raise SystemExit(f"kubesage sagemaker_processing: unknown argument {flag!r}")
    return sections


def member_folder(member: str) -> str:
    """Where member ``member`` of a fused job writes its outputs and result."""
    return os.path.join(root(), "processing", "output", MEMBERS_OUTPUT, member)


def run_fused(args: tuple[str, ...]) -> None:
    """Run the members of a fused processing job in order."""
    base = os.path.join(root(), "processing")
    scratch = tempfile.mkdtemp(prefix="kubesage-scratch-")
    members = []
    for sec in _sections(args):
        component = load_component(sec["entry"])
        inputs = {}
        for name, where in sec["inputs"].items():
            channel, _, folder = where.partition(":")
            meta = sec["metadata"].get(name)
            source = None
            if meta:
                meta_channel, _, output = meta.partition(":")
                source = (os.path.join(base, "input", meta_channel, RESULT_FILE), output)
            inputs[name] = open_input(os.path.join(base, "input", channel), folder,
                                      os.path.join(scratch, sec["name"], name), source)
        if sec["env"].get(BATCH_PHASE_ENV) == "collect":  # it reads only the inputs it was given
            for a in component.spec.inputs:
                if a.name not in sec["local"]:
                    inputs.setdefault(a.name, (os.path.join(scratch, "not-delivered", a.name), {}))
        folder = member_folder(sec["name"])
        members.append(MemberRun(
            sec["name"], component,
            typed_parameters(sec["entry"], sec["params"], sec["mounts"]),
            {k: _pair(v) for k, v in sec["from"].items()}, inputs,
            {k: _pair(v) for k, v in sec["local"].items()},
            {a.name: os.path.join(folder, a.name) for a in component.spec.outputs},
            dict(sec["env"])))

    def report(member: MemberRun, done: Any) -> None:
        if world().is_main:
            path = os.path.join(member_folder(member.name), RESULT_OUTPUT, RESULT_FILE)
            write_json_atomic(path, done.to_dict(), sort_keys=True)

    run_members(members, report)


def _pair(value: str) -> tuple[str, str]:
    member, _, name = value.partition(":")
    return member, name
