"""Neutral pipeline graph -> SageMaker Pipelines definition, built with the SageMaker SDK v3.

One step per task (and per item of a literal ``ParallelFor``): ``ProcessingStep`` or
``TrainingStep`` running ``python -m kubesage.runtime sagemaker_processing|sagemaker_training``
in the component's image, ``ModelStep`` for registration, ``ConditionStep`` for a ``Condition``
(with a ``FailStep`` where the config says that a condition that does not hold fails the
execution). Artifacts travel through S3 under ``s3://<bucket>/<prefix>/<pipeline>/...``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from kubesage.dsl.channel import LoopItem, PipelineParam, TaskOutput
from kubesage.dsl.control import Condition, ParallelFor
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.interface import ComponentSpec, Distribution
from kubesage.dsl.pipeline import Pipeline
from kubesage.dsl.task import Task
from kubesage.plan import Plan, PlanError, Step
from kubesage.runtime import sagemaker_training as training_contract
from kubesage.runtime.context import STEP_ENV
from kubesage.runtime.sagemaker_processing import ENTRYPOINT as PROCESSING_ENTRYPOINT
from kubesage.runtime.sagemaker_processing import (
    METADATA_SUFFIX,
    PROCESSING,
    RESULT_FILE,
    RESULT_OUTPUT,
)
from kubesage.targets.sagemaker.conditions import compile_condition, describe
from kubesage.targets.sagemaker.config import SageMakerConfig
from kubesage.targets.sagemaker.parameters import (
    as_string,
    compile_parameters,
    fan_out_parameters,
)


class CompileError(KubesageError):
    """A pipeline cannot be expressed on SageMaker Pipelines as written."""


def step_kind(spec: ComponentSpec, config: SageMakerConfig,
              distribution: Distribution | None = None) -> str:
    """processing, training or register: the config's hint, else the default rule."""
    distribution = distribution or spec.distribution
    if spec.container is not None:  # its own command line: a processing job runs it as is
        return "processing"
    hint = config.hints(spec.name).kind
    if hint:
        return hint
    makes_model = any(a.type == "Model" for a in spec.outputs)
    reads_model = any(a.type == "Model" for a in spec.inputs)
    if (makes_model and not reads_model) or distribution.world_size > 1:
        return "training"
    return "processing"


@dataclass(eq=False)
class _Instance:
    """A plan step as a SageMaker step: its name (``train-0`` for item 0 of a literal loop,
    since step names take no brackets), kind, SDK step and property files."""

    plan: Step
    name: str
    kind: str = ""
    step: Any = None
    property_files: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return self.plan.task

    @property
    def index(self) -> tuple[int, ...]:
        return self.plan.index


def sagemaker_name(step: Step) -> str:
    """The SageMaker step name of a plan step: ``train``, ``train-0`` for a literal loop's item."""
    return step.task.name + "".join(f"-{i}" for i in step.index)


class Compiler:
    """Builds the SDK ``Pipeline`` for one neutral pipeline and one target config."""

    def __init__(self, pipeline: Pipeline, config: SageMakerConfig, session: Any) -> None:
        self.pipeline = pipeline
        self.config = config
        self.session = session
        self.params = compile_parameters(pipeline)
        self.fan_out = fan_out_parameters(pipeline)
        self.instances: list[_Instance] = []
        self.plan: Plan | None = None
        self._of: dict[int, _Instance] = {}  # plan step -> its SageMaker step

    # -- the whole pipeline -----------------------------------------------------------
    def build(self) -> Any:
        from sagemaker.mlops.workflow.condition_step import ConditionStep
        from sagemaker.mlops.workflow.fail_step import FailStep
        from sagemaker.mlops.workflow.pipeline import Pipeline as SdkPipeline

        self._expand()
        top: list[Any] = []
        branches: dict[str, list[Any]] = {}
        for inst in self.instances:
            inst.kind = step_kind(inst.task.spec, self.config, inst.task.distribution)
            inst.step = {"processing": self._processing, "training": self._training,
                         "register": self._register}[inst.kind](inst)
            cond = self._condition_of(inst.task)
            if cond is None:
                top.append(inst.step)
            else:
                branches.setdefault(cond.id, []).append(inst.step)
        for group in self.pipeline.groups:
            if not isinstance(group, Condition) or group.id not in branches:
                continue
            else_steps = []
            if self.config.unmet_condition == "fail":
                else_steps = [FailStep(
                    name=f"{group.id}-not-met",
                    error_message=f"condition {describe(group.comparison)} does not hold; the "
                                  "steps it guards did not run",
                )]
            top.append(ConditionStep(
                name=group.id,
                conditions=[compile_condition(group.comparison, self._resolve_for(None))],
                if_steps=branches[group.id],
                else_steps=else_steps,
            ))
        return SdkPipeline(
            name=self.pipeline.name,
            parameters=list(self.params.values()),
            steps=top,
            sagemaker_session=self.session,
        )

    def _expand(self) -> None:
        for g in self.pipeline.groups:
            if isinstance(g, ParallelFor) and g.id not in self.fan_out and not isinstance(g.items, list):
                raise CompileError(
                    f"{g.id}: ParallelFor over {g.items.describe()} cannot compile for "
                    "SageMaker, which has no loops; loop over a list literal (unrolled into "
                    "steps) or a list pipeline parameter (one execution per item)")
        # Literal loops unroll into steps; a loop over a list parameter is one execution per item.
        self.plan = Plan(self.pipeline, None, expand=lambda g: g.id not in self.fan_out)
        for step in self.plan.steps:
            inst = _Instance(step, sagemaker_name(step))
            self._of[id(step)] = inst
            self.instances.append(inst)

    def _condition_of(self, task: Task) -> Condition | None:
        conds = [g for g in task.groups if isinstance(g, Condition)]
        if len(conds) > 1:
            raise CompileError(
                f"task '{task.name}' sits in {len(conds)} nested Conditions; SageMaker target "
                "compiles one level: combine them into one Condition or move the task out"
            )
        return conds[0] if conds else None

    # -- values -----------------------------------------------------------------------
    def _producer(self, out: TaskOutput, inst: _Instance | None) -> _Instance:
        assert self.plan is not None
        try:
            return self._of[id(self.plan.producer(out, inst.plan if inst else None))]
        except PlanError as e:
            raise CompileError(str(e)) from None

    def _resolve_for(self, inst: _Instance | None) -> Any:
        def resolve(value: Any) -> Any:
            if isinstance(value, PipelineParam):
                return self.params[value.name]
            if isinstance(value, LoopItem):
                if value.field:
                    raise CompileError(
                        f"{value.describe()}: SageMaker executions take one string per item; "
                        "loop over a list of strings instead of dicts")
                if value.loop_id in self.fan_out:
                    return self.params[self.fan_out[value.loop_id]]
                assert inst is not None and self.plan is not None
                return self.plan.item(inst.plan, value)
            if isinstance(value, TaskOutput):
                producer = self._producer(value, inst)
                if value.is_artifact:
                    return self._artifact_uri(producer, value.output)
                return self._json_get(producer, value.output)
            return value
        return resolve

    def _artifact_uri(self, producer: _Instance, output: str) -> Any:
        if producer.kind == "training":
            return producer.step.properties.ModelArtifacts.S3ModelArtifacts
        if producer.kind == "processing":
            return producer.step.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri
        raise CompileError(
            f"task '{producer.name}' is a registration step on SageMaker and has no artifact "
            f"'{output}' to read; connect the upstream model instead")

    def _json_get(self, producer: _Instance, name: str) -> Any:
        from sagemaker.core.workflow.functions import JsonGet
        from sagemaker.core.workflow.properties import PropertyFile

        if producer.task.spec.container is not None:
            raise CompileError(
                f"output '{name}' of task '{producer.name}' is read by a condition or another step, "
                f"but '{producer.task.spec.name}' is a container component (imported Kubeflow YAML): "
                "SageMaker reads values from a JSON property file, which its command does not "
                "write; pass the value on in an output artifact instead")
        if producer.kind != "processing":
            raise CompileError(
                f"output '{name}' of task '{producer.name}' is read by a condition or another "
                f"step, but '{producer.task.spec.name}' compiles to a {producer.kind} step, whose "
                "returned values SageMaker cannot read; return it from a processing component")
        hint = self.config.hints(producer.task.spec.name).returns.get(name)
        output, path, json_path = hint or (RESULT_OUTPUT, RESULT_FILE, f"returns.{name}")
        key = (output, path)
        if key not in producer.property_files:
            pf = PropertyFile(name=f"{output}-{path.rsplit('.', 1)[0]}".replace("/", "-"),
                              output_name=output, path=path)
            producer.property_files[key] = pf
            producer.step.property_files.append(pf)
        return JsonGet(step_name=producer.name, property_file=producer.property_files[key],
                       json_path=json_path)

    def _s3(self, inst: _Instance, *parts: str) -> Any:
        """Where a step writes in S3: unique per execution (and per client inside a fan-out), so
        an execution never overwrites what an earlier one (or a cache hit of it) points at.
        SageMaker's step cache does not look at output locations: a hit reuses the earlier
        job's outputs at their own paths."""
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.core.workflow.functions import Join

        keys = [self.params[name] for name in sorted(set(self.fan_out.values()))]
        return Join(on="/", values=[self.config.s3(self.pipeline.name), *keys,
                                    ExecutionVariables.PIPELINE_EXECUTION_ID, inst.name, *parts])

    def _checkpoints(self, inst: _Instance) -> Any:
        """Per execution: a spot-interrupted job resumes from its own checkpoints, and a new
        execution never resumes from an old one's."""
        return self._s3(inst, "checkpoints")

    def _arguments(self, inst: _Instance) -> tuple[dict[str, Any], dict[str, Any]]:
        """(parameter name -> value, artifact input name -> S3 URI expression)."""
        resolve = self._resolve_for(inst)
        params, artifacts = {}, {}
        for arg, value in sorted(inst.task.arguments.items()):
            if inst.task.spec.input(arg) is not None:
                artifacts[arg] = resolve(value)
            else:
                params[arg] = resolve(value)
        return params, artifacts

    def _metadata_sources(self, inst: _Instance) -> dict[str, tuple[Any, str]]:
        """Input name -> (S3 URI of the producing processing step's result output, the output's
        name): where an input's metadata comes from (a training job's is in its model.tar.gz)."""
        found = {}
        for arg, value in sorted(inst.task.arguments.items()):
            if isinstance(value, TaskOutput) and value.is_artifact:
                producer = self._producer(value, inst)
                if producer.kind == "processing" and producer.task.spec.container is None:
                    uri = producer.step.properties.ProcessingOutputConfig.Outputs[
                        RESULT_OUTPUT].S3Output.S3Uri
                    found[arg] = (uri, value.output)
        return found

    def _input_layout(self, inst: _Instance) -> dict[str, str]:
        """Input name -> folder inside what arrives (a training job's model.tar.gz holds one
        folder per output); '' when the artifact is the folder itself."""
        layout = {}
        for arg, value in sorted(inst.task.arguments.items()):
            if isinstance(value, TaskOutput) and value.is_artifact:
                producer = self._producer(value, inst)
                layout[arg] = value.output if producer.kind == "training" else ""
        return layout

    def _mount(self, spec: ComponentSpec, name: str) -> Any:
        mount = self.config.mounts.get(name)
        if mount is None:
            raise KubesageError(
                f"component '{spec.name}' mounts '{name}', but {self.config.source} has no "
                f"'mounts.{name}'; add mounts: {{{name}: {{file_system_id: fs-..., "
                "directory_path: /abcdefgh/data, s3_uri: s3://...}}}}")
        return mount

    def _model_package_group(self, inst: _Instance) -> Any:
        """The config's group; inside a fan-out, one group per item (``digits-classifier-acme``),
        which submission creates before it starts the executions."""
        from sagemaker.core.workflow.functions import Join

        loops = [g.id for g in inst.task.groups if isinstance(g, ParallelFor) and g.id in self.fan_out]
        if not loops:
            return self.config.model_package_group
        keys = [self.params[self.fan_out[loop]] for loop in loops]
        return Join(on="-", values=[self.config.model_package_group, *keys])

    def _common(self, inst: _Instance) -> dict[str, Any]:
        from sagemaker.mlops.workflow.retry import (
            SageMakerJobExceptionTypeEnum,
            SageMakerJobStepRetryPolicy,
        )
        from sagemaker.mlops.workflow.steps import CacheConfig

        out: dict[str, Any] = {"name": inst.name}
        assert self.plan is not None
        after = sorted(self._of[id(s)].name for t in inst.task.explicit_after
                       for s in self.plan.of_task(t))
        if after:
            out["depends_on"] = after
        if inst.task.cache:
            out["cache_config"] = CacheConfig(enable_caching=True,
                                              expire_after=self.config.cache_expire_after)
        if inst.task.retries:
            out["retry_policies"] = [SageMakerJobStepRetryPolicy(
                exception_types=[SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                                 SageMakerJobExceptionTypeEnum.CAPACITY_ERROR],
                max_attempts=inst.task.retries)]
        return out

    # -- steps ------------------------------------------------------------------------
    def _processing(self, inst: _Instance) -> Any:
        spec = inst.task.spec
        if spec.container is not None:
            return self._container_processing(inst)
        params, artifacts = self._arguments(inst)
        layout = self._input_layout(inst)
        args: list[Any] = ["--entry", spec.entry]
        inputs = {name: (uri, f"{PROCESSING}/input/{name}") for name, uri in artifacts.items()}
        for name in artifacts:
            args += ["--input", f"{name}={layout.get(name, '')}"]
        for name, (uri, output) in self._metadata_sources(inst).items():
            inputs[name + METADATA_SUFFIX] = (uri, f"{PROCESSING}/input/{name}{METADATA_SUFFIX}")
            args += ["--metadata", f"{name}={output}"]
        for name, target in spec.mounts:
            local = f"{PROCESSING}/mounts/{name}"
            inputs[f"mount-{name}"] = (self._mount(spec, name).s3_uri, local)
            args += ["--mount", f"{target}={local}"]
        for name, value in params.items():
            args += ["--param", name, as_string(value)]
        return self._processing_step(
            inst, inputs, [a.name for a in spec.outputs] + [RESULT_OUTPUT], PROCESSING_ENTRYPOINT,
            args, {}, self.config.hints(spec.name).instance_count or 1)

    def _container_processing(self, inst: _Instance) -> Any:
        """A container component as a processing job running its own image and command line.

        Input artifacts arrive under ``/opt/ml/processing/input/<name>``; output ``y`` is the
        file or folder ``y`` inside ``/opt/ml/processing/output/<y>`` (the artifact's folder);
        output parameter files go to the result output, kept in S3 beside the artifacts.
        """
        from sagemaker.core.workflow.functions import Join

        from kubesage.dsl.container import Concat, Placeholder, expand

        spec = inst.task.spec
        assert spec.container is not None
        given, artifacts = self._arguments(inst)
        params = {**{p.name: p.default for p in spec.parameters if not p.required}, **given}
        paths: dict[str, str] = {}
        for arg, value in sorted(inst.task.arguments.items()):
            if isinstance(value, TaskOutput) and value.is_artifact:
                producer = self._producer(value, inst)
                if producer.kind != "processing":
                    raise CompileError(
                        f"task '{inst.name}' (container component '{spec.name}') reads '{arg}' from "
                        f"{producer.kind} step '{producer.name}', whose artifact SageMaker packs "
                        "as model.tar.gz; only kubesage components unpack it")
                inner = f"/{value.output}" if producer.task.spec.container else ""
                paths[arg] = f"{PROCESSING}/input/{arg}{inner}"

        def resolve(ph: Placeholder) -> Any:
            if ph.direction == "inputs" and ph.kind == "parameters":
                return as_string(params[ph.name])
            if ph.direction == "inputs":
                return paths[ph.name]
            if ph.kind == "artifacts":
                return f"{PROCESSING}/output/{ph.name}/{ph.name}"
            return f"{PROCESSING}/output/{RESULT_OUTPUT}/{ph.name}"

        def present(name: str) -> bool:
            return params.get(name) is not None or name in artifacts

        def compiled(items: tuple[str, ...]) -> list[Any]:
            return [Join(on="", values=list(x.parts)) if isinstance(x, Concat) else x
                    for x in expand(items, resolve, present)]

        return self._processing_step(
            inst, {name: (uri, f"{PROCESSING}/input/{name}") for name, uri in artifacts.items()},
            [a.name for a in spec.outputs] + ([RESULT_OUTPUT] if spec.returns else []),
            compiled(spec.container.command) or None, compiled(spec.container.args) or None,
            dict(spec.container.env), 1)

    def _processing_step(self, inst: _Instance, inputs: dict[str, tuple[Any, str]],
                         outputs: list[str], entrypoint: list[Any] | None,
                         arguments: list[Any] | None, env: dict[str, str],
                         instance_count: int) -> Any:
        """A ProcessingStep in the component's image: ``inputs`` maps an input name to (S3 URI,
        local path); each output ``name`` is uploaded from ``/opt/ml/processing/output/<name>``."""
        from sagemaker.core.network import NetworkConfig
        from sagemaker.core.processing import Processor
        from sagemaker.core.shapes import (
            ProcessingInput,
            ProcessingOutput,
            ProcessingS3Input,
            ProcessingS3Output,
        )
        from sagemaker.mlops.workflow.steps import ProcessingStep

        spec, hints = inst.task.spec, self.config.hints(inst.task.spec.name)
        processor = Processor(
            role=self.config.role_arn,
            image_uri=self.config.image_uri(spec.image, spec.name),
            instance_count=instance_count,
            instance_type=hints.instance_type or self.config.processing_instance_type,
            volume_size_in_gb=hints.volume_size_gb or 30,
            entrypoint=entrypoint,
            max_runtime_in_seconds=self.config.max_run_s,
            base_job_name=inst.name,
            env={**env, STEP_ENV: inst.name},
            network_config=NetworkConfig(subnets=list(self.config.subnets),
                                         security_group_ids=list(self.config.security_groups)),
            sagemaker_session=self.session,
        )
        step_args = processor.run(
            inputs=[ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
                s3_uri=uri, local_path=local, s3_data_type="S3Prefix", s3_input_mode="File"))
                for name, (uri, local) in inputs.items()],
            outputs=[ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
                s3_uri=self._s3(inst, name), local_path=f"{PROCESSING}/output/{name}",
                s3_upload_mode="EndOfJob")) for name in outputs],
            arguments=arguments)
        return ProcessingStep(step_args=step_args, property_files=[], **self._common(inst))

    def _training(self, inst: _Instance) -> Any:
        from sagemaker.core.shapes import FileSystemDataSource, StoppingCondition
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            InputData,
            Networking,
            OutputDataConfig,
        )
        from sagemaker.mlops.workflow.steps import TrainingStep

        spec, hints = inst.task.spec, self.config.hints(inst.task.spec.name)
        params, artifacts = self._arguments(inst)
        channels = [InputData(channel_name=name, data_source=uri) for name, uri in artifacts.items()]
        metadata = self._metadata_sources(inst)
        channels += [InputData(channel_name=name + METADATA_SUFFIX, data_source=uri)
                     for name, (uri, _) in metadata.items()]
        mounts = {}
        for name, target in spec.mounts:
            mount = self._mount(spec, name)
            channels.append(InputData(channel_name=name, data_source=FileSystemDataSource(
                file_system_id=mount.file_system_id, file_system_type="FSxLustre",
                directory_path=mount.directory_path, file_system_access_mode="ro")))
            mounts[target] = f"/opt/ml/input/data/{name}"
        stopping = StoppingCondition(max_runtime_in_seconds=self.config.max_run_s)
        if self.config.spot:
            stopping = StoppingCondition(max_runtime_in_seconds=self.config.max_run_s,
                                         max_wait_time_in_seconds=self.config.max_wait_s)
        trainer = _trainer_class()(
            training_image=self.config.image_uri(spec.image, spec.name),
            role=self.config.role_arn,
            base_job_name=inst.name,
            sagemaker_session=self.session,
            compute=Compute(
                instance_type=hints.instance_type or self.config.training_instance_type,
                instance_count=hints.instance_count or inst.task.distribution.nodes,
                volume_size_in_gb=hints.volume_size_gb or 30,
                enable_managed_spot_training=self.config.spot or None,
            ),
            networking=Networking(subnets=list(self.config.subnets),
                                  security_group_ids=list(self.config.security_groups)),
            stopping_condition=stopping,
            output_data_config=OutputDataConfig(s3_output_path=self._s3(inst),
                                                compression_type="GZIP"),
            checkpoint_config=CheckpointConfig(s3_uri=self._checkpoints(inst),
                                               local_path="/opt/ml/checkpoints"),
            hyperparameters={name: as_string(value) for name, value in params.items()},
            environment={
                training_contract.ENTRY_ENV: spec.entry,
                STEP_ENV: inst.name,
                training_contract.INPUTS_ENV: json.dumps(self._input_layout(inst), sort_keys=True),
                **({training_contract.METADATA_ENV: json.dumps(
                    {k: output for k, (_, output) in metadata.items()}, sort_keys=True)}
                   if metadata else {}),
                training_contract.MOUNTS_ENV: json.dumps(mounts, sort_keys=True),
                training_contract.PROCS_ENV: str(inst.task.distribution.procs_per_node),
            },
        )
        step_args = trainer.train(input_data_config=channels or None)
        return TrainingStep(step_args=step_args, **self._common(inst))

    def _register(self, inst: _Instance) -> Any:
        from sagemaker.mlops.workflow.model_step import ModelStep
        from sagemaker.serve.model_builder import ModelBuilder

        spec = inst.task.spec
        params, artifacts = self._arguments(inst)
        models = [a.name for a in spec.inputs if a.type == "Model"]
        if len(models) != 1:
            raise CompileError(
                f"component '{spec.name}' is mapped to a registration step (kind: register) and "
                f"needs exactly one Model input, it has {len(models)}; change its hint in "
                f"{self.config.source}")
        builder = ModelBuilder(
            image_uri=self.config.image_uri(spec.image, spec.name),
            s3_model_data_url=artifacts[models[0]],
            role_arn=self.config.role_arn,
            sagemaker_session=self.session,
            log_level=logging.ERROR,
        )
        step_args = builder.register(
            model_package_group_name=self._model_package_group(inst),
            content_types=["application/json"],
            response_types=["application/json"],
            inference_instances=[self.config.processing_instance_type],
            transform_instances=[self.config.processing_instance_type],
            approval_status="PendingManualApproval",
            description=" ".join(spec.description.split("\n\n")[0].split())[:1000] or spec.name,
            customer_metadata_properties={k: as_string(v) for k, v in params.items()},
        )
        common = self._common(inst)
        common.pop("cache_config", None)  # registration is not a cacheable job
        common.pop("retry_policies", None)
        return ModelStep(step_args=step_args, **common)


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


def definition_json(pipeline: Pipeline, config: SageMakerConfig) -> str:
    """The definition as canonical JSON text (sorted keys): the same input, the same bytes."""
    from kubesage.targets.sagemaker.session import offline, pipeline_session, quiet_sdk_logs

    with offline():
        session = pipeline_session(config)
        sdk_pipeline = Compiler(pipeline, config, session).build()
        quiet_sdk_logs()
        doc = json.loads(sdk_pipeline.definition())
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
