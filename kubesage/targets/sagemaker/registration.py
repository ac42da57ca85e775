"""Registration steps: a ``ModelStep`` registering the model a training step made into the
config's model package group (one group per client inside a fan-out)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kubesage.targets.sagemaker.parameters import as_string

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.compiler import Compiler, Instance


def register(c: Compiler, inst: Instance) -> Any:
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.serve.model_builder import ModelBuilder

    spec = inst.task.spec
    params, artifacts = c.arguments(inst)
    model = c.model_input(inst, "registration step")
    builder = ModelBuilder(
        image_uri=c.config.image_uri(spec.image, spec.name),
        s3_model_data_url=artifacts[model],
        role_arn=c.config.role_arn,
        sagemaker_session=c.session,
        log_level=logging.ERROR,
    )
    step_args = builder.register(
        model_package_group_name=c.model_package_group(inst),
        content_types=["application/json"],
        response_types=["application/json"],
        inference_instances=[c.config.processing_instance_type],
        transform_instances=[c.config.processing_instance_type],
        approval_status="PendingManualApproval",
        description=" ".join(spec.description.split("\n\n")[0].split())[:1000] or spec.name,
        customer_metadata_properties={k: as_string(v) for k, v in params.items()},
    )
    common = c.common(inst)
    common.pop("cache_config", None)  # registration is not a cacheable job
    common.pop("retry_policies", None)
    return ModelStep(step_args=step_args, **common)
