"""The Kubeflow Pipelines target: compile to KFP v2 IR, validate it, run it locally, submit it.

Modules, one concern each: ``config`` (config/kfp.yaml), ``components`` (one container
component per task), ``platform`` (kfp-kubernetes settings), ``trainjob`` (multi-node steps on
Kubeflow Trainer), ``compiler``, ``validate``, ``local_run`` (kfp.local DockerRunner),
``submit`` (kfp.Client). The kfp SDK is imported only inside this package.
"""

from __future__ import annotations

from typing import Any, TextIO

from kubesage.dsl.interface import ComponentSpec
from kubesage.dsl.pipeline import Pipeline
from kubesage.runs.record import RunRecord

NAME = "kfp"


def compile_pipeline(pipeline: Pipeline, output: str, config_path: str | None = None) -> None:
    """Write the pipeline's KFP v2 IR YAML to ``output`` (atomically)."""
    from kubesage.targets.kfp.compiler import compile_to_file
    from kubesage.targets.kfp.config import load_kfp_config

    compile_to_file(pipeline, output, load_kfp_config(config_path))


def validate_file(path: str) -> str:
    """Check a compiled YAML strictly; a one-line summary, or a ``KfpValidationError``."""
    from kubesage.targets.kfp.validate import validate_file as _validate

    return _validate(path)


def run_pipeline(pipeline: Pipeline, params: dict[str, Any], config_path: str | None = None,
                 pipeline_file: str = "", log: TextIO | None = None) -> RunRecord:
    """Compile, then run the compiled YAML with kfp.local's DockerRunner; the run record."""
    from kubesage.targets.kfp.local_run import run_compiled

    return run_compiled(pipeline, params, config_path, pipeline_file, log)


def submit(ref: str, params: dict[str, Any], config_path: str | None = None, wait: bool = False,
           clients: list[str] | None = None) -> dict[str, Any]:
    """Submit a pipeline file (compiled on the fly) or a compiled YAML through kfp.Client."""
    from kubesage.targets.kfp.submit import submit as _submit

    return _submit(ref, params, config_path, wait, clients)


def export_component(spec: ComponentSpec, output: str, config_path: str | None = None) -> str:
    """Write one component as a Kubeflow component YAML (``kfp.components`` loads it)."""
    from kubesage.targets.kfp.component_yaml import export_component as _export
    from kubesage.targets.kfp.config import load_kfp_config

    return _export(spec, output, load_kfp_config(config_path))


__all__ = ["NAME", "compile_pipeline", "export_component", "run_pipeline", "submit",
           "validate_file"]
