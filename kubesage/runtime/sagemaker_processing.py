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
``output/kubesage-result/result.json`` (conditions read it through a PropertyFile). An output
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
from kubesage.runtime.context import batch_phase, world
from kubesage.runtime.invoke import Invocation, Result, invoke, load_component
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
