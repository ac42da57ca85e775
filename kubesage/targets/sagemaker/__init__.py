"""The SageMaker Pipelines target: compile, validate, run the definition locally, submit.

The SageMaker SDK (pinned, see ``session.SDK_VERSION``) and boto3 are imported only inside the
functions below, so importing this package stays as cheap as importing kubesage.

- ``compiler``: neutral graph -> definition JSON (``ProcessingStep``, ``TrainingStep``,
  ``ModelStep``, ``ConditionStep``/``FailStep``); ``parameters``, ``conditions`` beside it;
- ``config``: the target config file (``config/sagemaker.yaml``);
- ``validate``: each step's arguments against botocore's SageMaker service model;
- ``local_run``: executes a definition JSON on this machine, in Docker, under SageMaker's
  container contract; ``expressions`` evaluates its pipeline expressions;
- ``submit``: upsert and start executions with boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from kubesage.fsutil import write_atomic

if TYPE_CHECKING:
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.runs.record import RunRecord

NAME = "sagemaker"


def compile_pipeline(pipeline: Pipeline, output: str, config_path: str | None = None) -> None:
    """Compile ``pipeline`` to a SageMaker Pipelines definition JSON file (no AWS call)."""
    from kubesage.targets.sagemaker.compiler import definition_json
    from kubesage.targets.sagemaker.config import load_config

    write_atomic(output, definition_json(pipeline, load_config(config_path)))


def validate_file(path: str) -> str:
    """Check a definition against botocore's SageMaker service model; a one-line summary."""
    from kubesage.targets.sagemaker.validate import validate_definition_file

    return validate_definition_file(path)


def run_pipeline(
    pipeline: Pipeline,
    params: dict[str, Any],
    config_path: str | None = None,
    pipeline_file: str = "",
    log: TextIO | None = None,
) -> RunRecord:
    """Compile, then execute the compiled definition locally in Docker (no AWS account)."""
    from kubesage.targets.sagemaker.local_run import run_compiled

    return run_compiled(pipeline, params, config_path, pipeline_file, log)


def submit(
    ref: str,
    params: dict[str, str],
    config_path: str | None = None,
    wait: bool = False,
    clients: list[str] | None = None,
) -> dict[str, Any]:
    """Upsert the pipeline and start executions (one per client) with boto3."""
    from kubesage.targets.sagemaker.submit import submit_pipeline

    return submit_pipeline(ref, params, config_path, wait, clients)
