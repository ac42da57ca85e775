"""Training steps: the training contract in a bring-your-own image, on ``nodes`` instances.

Hyperparameters carry the parameter values as text; input artifacts and FSx for Lustre data
mounts are channels; outputs travel in ``model.tar.gz``; checkpoints go to S3 so that a
spot-interrupted job resumes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kubesage.runtime import sagemaker_training as training_contract
from kubesage.runtime.context import STEP_ENV
from kubesage.runtime.sagemaker_processing import METADATA_SUFFIX
from kubesage.targets.sagemaker.limits import gpu_env
from kubesage.targets.sagemaker.parameters import as_string

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.compiler import Compiler, Instance


def training(c: Compiler, inst: Instance) -> Any:
    from sagemaker.core.shapes import FileSystemDataSource
    from sagemaker.core.training.configs import InputData

    spec, hints = inst.task.spec, c.config.hints(inst.task.spec.name)
    params, artifacts = c.arguments(inst)
    channels = [InputData(channel_name=name, data_source=uri) for name, uri in artifacts.items()]
    metadata = c.metadata_sources(inst)
    channels += [InputData(channel_name=name + METADATA_SUFFIX, data_source=uri)
                 for name, (uri, _) in metadata.items()]
    mounts = {}
    for name, target in spec.mounts:
        mount = c.mount(spec, name)
        channels.append(InputData(channel_name=name, data_source=FileSystemDataSource(
            file_system_id=mount.file_system_id, file_system_type="FSxLustre",
            directory_path=mount.directory_path, file_system_access_mode="ro")))
        mounts[target] = f"/opt/ml/input/data/{name}"
    return training_job(
        c, name=inst.name, image_uri=c.config.image_uri(spec.image, spec.name),
        instance_type=hints.instance_type or c.config.training_instance_type,
        instance_count=hints.instance_count or inst.task.distribution.nodes,
        volume_gb=hints.volume_size_gb or 30, output=c.s3(inst), checkpoints=c.checkpoints(inst),
        hyperparameters={name: as_string(value) for name, value in params.items()},
        environment={
            training_contract.ENTRY_ENV: spec.entry,
            STEP_ENV: inst.name,
            training_contract.INPUTS_ENV: json.dumps(c.input_layout(inst), sort_keys=True),
            **({training_contract.METADATA_ENV: json.dumps(
                {k: output for k, (_, output) in metadata.items()}, sort_keys=True)}
               if metadata else {}),
            training_contract.MOUNTS_ENV: json.dumps(mounts, sort_keys=True),
            training_contract.PROCS_ENV: str(inst.task.distribution.procs_per_node),
            **gpu_env(inst.task),
        },
        channels=channels, common=c.common(inst))


def training_job(c: Compiler, *, name: str, image_uri: str, instance_type: str,
                 instance_count: int, volume_gb: int, output: Any, checkpoints: Any,
                 hyperparameters: dict[str, Any], environment: dict[str, str],
                 channels: list[Any], common: dict[str, Any],
                 metrics: dict[str, str] | None = None) -> Any:
    """A TrainingStep running the kubesage runtime; ``metrics`` (name -> regex) become the
    job's metric definitions (``FinalMetricDataList``)."""
    from sagemaker.core.shapes import MetricDefinition, StoppingCondition
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        Networking,
        OutputDataConfig,
    )
    from sagemaker.mlops.workflow.steps import TrainingStep

    stopping = StoppingCondition(max_runtime_in_seconds=c.config.max_run_s)
    if c.config.spot:
        stopping = StoppingCondition(max_runtime_in_seconds=c.config.max_run_s,
                                     max_wait_time_in_seconds=c.config.max_wait_s)
    trainer = _trainer_class()(
        training_image=image_uri,
        role=c.config.role_arn,
        base_job_name=name,
        sagemaker_session=c.session,
        compute=Compute(
            instance_type=instance_type,
            instance_count=instance_count,
            volume_size_in_gb=volume_gb,
            volume_kms_key_id=c.config.kms_key or None,
            enable_managed_spot_training=c.config.spot or None,
            keep_alive_period_in_seconds=c.config.warm_pool_s or None,
        ),
        networking=Networking(subnets=list(c.config.subnets),
                              security_group_ids=list(c.config.security_groups),
                              enable_network_isolation=c.config.network_isolation or None),
        stopping_condition=stopping,
        output_data_config=OutputDataConfig(s3_output_path=output, compression_type="GZIP",
                                            kms_key_id=c.config.kms_key or None),
        checkpoint_config=CheckpointConfig(s3_uri=checkpoints,
                                           local_path="/opt/ml/checkpoints"),
        hyperparameters=hyperparameters,
        environment=environment,
    )
    if metrics:
        trainer.with_metric_definitions([MetricDefinition(name=n, regex=r)
                                         for n, r in sorted(metrics.items())])
    step_args = trainer.train(input_data_config=channels or None)
    return TrainingStep(step_args=step_args, **common)


_TRAINER: Any = None


def _trainer_class() -> Any:
    """``ModelTrainer`` that starts the kubesage runtime in a bring-your-own image.

    Without ``source_code`` the SDK leaves the container entry point to the image; the
    definition names it (``ContainerEntrypoint``) so any image holding the runtime works.
    """
    global _TRAINER
    if _TRAINER is None:
        from sagemaker.train import ModelTrainer

        class KubesageTrainer(ModelTrainer):  # type: ignore[misc]
            def _create_training_job_args(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
                request: dict[str, Any] = super()._create_training_job_args(*args, **kwargs)
                entrypoint = list(training_contract.ENTRYPOINT)
                if "AlgorithmSpecification" in request:  # pipeline sessions: the API's form
                    request["AlgorithmSpecification"]["ContainerEntrypoint"] = entrypoint
                else:
                    request["algorithm_specification"].container_entrypoint = entrypoint
                return request

        _TRAINER = KubesageTrainer
    return _TRAINER
