"""The SageMaker processing contract: ``/opt/ml/processing/{input,output}/<name>``.

The compiled step starts ``python -m kubesage.runtime sagemaker_processing`` with arguments::

    --entry components.evaluate:evaluate      the component to call
    --input model=model                       input artifact at input/<name>; after '=' the
                                              folder inside a training job's model.tar.gz
    --mount /fsx=/opt/ml/processing/mounts/fsx   a data mount delivered from S3: parameter
                                              values under /fsx are rewritten onto it
    --param epochs 8                          parameter values, as text (typed by the spec)

Outputs go to ``output/<name>``; the step's returned values, metrics and artifact metadata to
``output/kubesage-result/result.json`` (conditions read it through a PropertyFile). Artifact
metadata also travels inside each output as ``.kubesage-metadata.json``.
The helpers here are shared with the training contract (``sagemaker_training``).
"""

from __future__ import annotations

import json
import os
import tarfile
from typing import Any

from kubesage.dsl.types import parse_value
from kubesage.fsutil import write_json_atomic
from kubesage.runtime.context import world
from kubesage.runtime.invoke import Invocation, Result, invoke, load_component

ROOT_ENV = "KUBESAGE_SAGEMAKER_ROOT"  # /opt/ml unless a test runs the contract in place
METADATA_FILE = ".kubesage-metadata.json"
RESULT_OUTPUT = "kubesage-result"
RESULT_FILE = "result.json"


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


def open_input(path: str, folder: str, scratch: str) -> tuple[str, dict[str, Any]]:
    """(artifact folder, metadata) of an input as delivered: a folder, or a training job's
    ``model.tar.gz`` holding one folder per output (``folder`` picks one)."""
    archives = [f for f in os.listdir(path) if f.endswith(".tar.gz")] if os.path.isdir(path) else []
    if folder:  # a training job's output: unpack model.tar.gz, pick the output's folder
        for archive in archives:
            _extract(os.path.join(path, archive), scratch)
        path = os.path.join(scratch, folder)
    metadata: dict[str, Any] = {}
    meta_path = os.path.join(path, METADATA_FILE)
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            metadata = json.load(f)
    return path, metadata


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


def finish(result: Result, outputs: dict[str, str], result_path: str) -> None:
    """Write each output's metadata beside it and the step's result file (atomically)."""
    for name, folder in outputs.items():
        with open(os.path.join(folder, METADATA_FILE), "w") as f:
            json.dump(result.artifacts.get(name, {}), f, sort_keys=True)
    write_json_atomic(result_path, result.to_dict(), sort_keys=True)


def _parse(args: tuple[str, ...]) -> tuple[str, dict[str, str], dict[str, str], dict[str, str]]:
    entry = ""
    inputs: dict[str, str] = {}
    mounts: dict[str, str] = {}
    params: dict[str, str] = {}
    items = list(args)
    while items:
        flag = items.pop(0)
        if flag == "--entry":
            entry = items.pop(0)
        elif flag in ("--input", "--mount"):
            key, _, value = items.pop(0).partition("=")
            (inputs if flag == "--input" else mounts)[key] = value
        elif flag == "--param":
            name = items.pop(0)
            params[name] = items.pop(0)
        else:
            raise SystemExit(f"kubesage sagemaker_processing: unknown argument {flag!r}")
    if not entry:
        raise SystemExit("kubesage sagemaker_processing: --entry module:component is required")
    return entry, inputs, mounts, params


def main(*args: str) -> None:
    entry, input_folders, mounts, texts = _parse(args)
    base = os.path.join(root(), "processing")
    component = load_component(entry)
    inputs = {
        name: open_input(os.path.join(base, "input", name), folder,
                         os.path.join(base, "kubesage-scratch", name))
        for name, folder in input_folders.items()
    }
    outputs = {a.name: os.path.join(base, "output", a.name) for a in component.spec.outputs}
    call = Invocation(typed_parameters(entry, texts, mounts), inputs, outputs)
    result = invoke(component, call)
    if world().is_main:
        finish(result, outputs, os.path.join(base, "output", RESULT_OUTPUT, RESULT_FILE))
