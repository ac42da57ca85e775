"""Batch inference as SageMaker runs it: a component that declares ``Serving`` (``predict``)
compiles to a model in the serving image plus a batch transform job, between the component's
own two halves (``kubesage.runtime.context.BatchPhase``):

1. ``<task>-requests``, a processing step: the component reads its images as it always does and
   writes them as ``requests.jsonl`` (one PNG per line) into its first output;
2. ``<task>-model``, a ``ModelStep`` creating a model: the serving image (``Serving.image``,
   handler ``Serving.handler``) with the model artifact the task reads as its model data
   (``KUBESAGE_MODEL_PATH`` picks the folder of a training job's ``model.tar.gz``);
3. ``<task>-transform``, a ``TransformStep``: ``SplitType=Line`` over ``requests.jsonl``,
   ``BatchStrategy=MultiRecord`` (up to ``MaxPayloadInMB`` per request) to
   ``POST /invocations`` as ``application/jsonlines``, answers assembled by line;
4. ``<task>``, a processing step: the component turns the answers into its outputs, exactly the
   files it writes when it runs whole, so the steps downstream read it as on every target.

The task's record is step 4's; the other three are SageMaker's own, as a ``ConditionStep`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubesage.runtime.context import (
    BATCH_PHASE_ENV,
    BATCH_REQUESTS_ENV,
    BATCH_RESULTS_ENV,
    REQUESTS_FILE,
)
from kubesage.runtime.sagemaker_processing import PROCESSING
from kubesage.serving import HANDLER_ENV, JSON_LINES, MODEL_PATH_ENV
from kubesage.targets.sagemaker.processing import processing

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.compiler import Compiler, Instance

MAX_PAYLOAD_MB = 6  # per request to the container (the service's default; at most 100)
REQUESTS_PART, MODEL_PART, TRANSFORM_PART = "requests", "model", "transform"


# The job that collects the answers: (env, input artifacts it reads, extra inputs) -> its step.
Collect = Callable[[dict[str, Any], set[str], dict[str, tuple[Any, str]]], Any]


def transform(c: Compiler, inst: Instance, collect: Collect | None = None) -> list[Any]:
    """The four steps of a batch-inference task, in order; the last one is the task's.
    ``collect`` builds the last one (a fused job whose first member it is); by default the
    task's own processing step."""
    import logging

    from sagemaker.core.training.configs import Networking
    from sagemaker.core.transformer import Transformer
    from sagemaker.core.workflow.functions import Join
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.steps import TransformStep
    from sagemaker.serve.model_builder import ModelBuilder

    from kubesage.targets.sagemaker.compiler import CompileError

    spec = inst.task.spec
    if spec.serving is None or spec.container is not None or not spec.outputs:
        raise CompileError(
            f"component '{spec.name}' is mapped to a batch transform (kind: transform) but "
            "declares no Serving (or is a container component without outputs); give it "
            f"@component(serving=Serving(handler=...)) or change its hint in {c.config.source}")
    model_input = c.model_input(inst, "batch transform")
    _, artifacts = c.arguments(inst)
    hints = c.config.hints(spec.name)
    common = c.common(inst)
    first = spec.outputs[0].name

    requests = processing(c, inst, part=REQUESTS_PART, env={BATCH_PHASE_ENV: "requests"})
    asked = requests.properties.ProcessingOutputConfig.Outputs[first].S3Output.S3Uri

    env = {HANDLER_ENV: spec.serving.handler}
    folder = c.input_layout(inst).get(model_input, "")
    if folder:
        env[MODEL_PATH_ENV] = folder
    builder = ModelBuilder(
        image_uri=c.config.image_uri(spec.serving.image, spec.name),
        s3_model_data_url=artifacts[model_input],
        role_arn=c.config.role_arn,
        sagemaker_session=c.session,
        env_vars=env,
        # the jobs' network: the transform's container runs in the model's VPC
        network=Networking(subnets=list(c.config.subnets),
                           security_group_ids=list(c.config.security_groups),
                           enable_network_isolation=c.config.network_isolation or None),
        log_level=logging.ERROR,
    )
    model = ModelStep(name=f"{inst.name}-{MODEL_PART}", step_args=builder.build())

    transformer = Transformer(
        model_name=model.properties.ModelName,
        instance_count=hints.instance_count or 1,
        instance_type=hints.instance_type or c.config.transform_instance_type
        or c.config.processing_instance_type,
        strategy="MultiRecord",
        assemble_with="Line",
        accept=JSON_LINES[0],
        max_payload=MAX_PAYLOAD_MB,
        output_path=c.s3(inst, TRANSFORM_PART),
        output_kms_key=c.config.kms_key or None,
        volume_kms_key=c.config.kms_key or None,
        base_transform_job_name=f"{inst.name}-{TRANSFORM_PART}",
        sagemaker_session=c.session,
    )
    job = TransformStep(
        name=f"{inst.name}-{TRANSFORM_PART}",
        step_args=transformer.transform(data=Join(on="/", values=[asked, REQUESTS_FILE]),
                                        content_type=JSON_LINES[0], split_type="Line"),
        **{k: v for k, v in common.items() if k in ("cache_config", "retry_policies")},
    )

    answers = job.properties.TransformOutput.S3OutputPath
    local = {"batch-requests": f"{PROCESSING}/input/batch-requests",
             "batch-results": f"{PROCESSING}/input/batch-results"}
    env = {BATCH_PHASE_ENV: "collect", BATCH_REQUESTS_ENV: local["batch-requests"],
           BATCH_RESULTS_ENV: local["batch-results"]}
    extra = {"batch-requests": (asked, local["batch-requests"]),
             "batch-results": (answers, local["batch-results"])}
    if collect is None:
        return [requests, model, job, processing(c, inst, only={model_input}, env=env, extra=extra)]
    return [requests, model, job, collect(env, {model_input}, extra)]
