"""Neutral pipeline graph -> SageMaker Pipelines definition, built with the SageMaker SDK v3.

One step per task (and per item of a literal ``ParallelFor``): ``ProcessingStep`` or
``TrainingStep`` running ``python -m kubesage.runtime sagemaker_processing|sagemaker_training``
in the component's image, ``ModelStep`` for registration, a batch transform for batch inference
(four steps, ``transform.py``), ``ConditionStep`` for a ``Condition``
(with a ``FailStep`` where the config says that a condition that does not hold fails the
execution). Artifacts travel through S3 under ``s3://<bucket>/<prefix>/<pipeline>/...``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kubesage.dsl.channel import LoopItem, PipelineParam, TaskOutput
from kubesage.dsl.control import Condition, ParallelFor
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.interface import ComponentSpec, Distribution
from kubesage.dsl.pipeline import Pipeline
from kubesage.dsl.task import Task
from kubesage.plan import Plan, PlanError, Step
from kubesage.runtime.sagemaker_processing import (
    RESULT_FILE,
    RESULT_OUTPUT,
)
from kubesage.targets.sagemaker import fused, processing, registration, training, transform
from kubesage.targets.sagemaker.conditions import compile_condition, describe
from kubesage.targets.sagemaker.config import SageMakerConfig
from kubesage.targets.sagemaker.parameters import (
    compile_parameters,
    fan_out_parameters,
)


class CompileError(KubesageError):
    """A pipeline cannot be expressed on SageMaker Pipelines as written."""


def step_kind(spec: ComponentSpec, config: SageMakerConfig,
              distribution: Distribution | None = None) -> str:
    """processing, training, register or transform: the config's hint, else the default rule."""
    distribution = distribution or spec.distribution
    if spec.container is not None:  # its own command line: a processing job runs it as is
        return "processing"
    hint = config.hints(spec.name).kind
    if hint:
        return hint
    if spec.serving is not None:
        return "transform"
    makes_model = any(a.type == "Model" for a in spec.outputs)
    reads_model = any(a.type == "Model" for a in spec.inputs)
    if (makes_model and not reads_model) or distribution.world_size > 1:
        return "training"
    return "processing"


@dataclass(eq=False)
class Instance:
    """A plan step as a SageMaker step: its name (``train-0`` for item 0 of a literal loop,
    since step names take no brackets), kind, SDK step and property files."""

    plan: Step
    name: str
    kind: str = ""
    step: Any = None  # the step whose outputs are the task's (the last of several)
    steps: list[Any] = field(default_factory=list)  # every SDK step of the task, in order
    property_files: dict[tuple[str, str], Any] = field(default_factory=dict)
    group: Any = None  # the fused job it runs in (``fused.FusedJob``), if any

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
        self.instances: list[Instance] = []
        self.plan: Plan | None = None
        self._of: dict[int, Instance] = {}  # plan step -> its SageMaker step

    # -- the whole pipeline -----------------------------------------------------------
    def build(self) -> Any:
        from sagemaker.mlops.workflow.condition_step import ConditionStep
        from sagemaker.mlops.workflow.fail_step import FailStep
        from sagemaker.mlops.workflow.pipeline import Pipeline as SdkPipeline

        self._expand()
        top: list[Any] = []
        branches: dict[str, list[Any]] = {}
        for unit in self._units():
            if isinstance(unit, fused.FusedJob):
                unit.steps = fused.build(self, unit)
                unit.step = unit.steps[-1]
                for member in unit.members:
                    member.step = unit.step
                steps, task = unit.steps, unit.members[0].task
            else:
                inst = unit
                inst.kind = step_kind(inst.task.spec, self.config, inst.task.distribution)
                built = {"processing": processing.processing, "training": training.training,
                         "register": registration.register,
                         "transform": transform.transform}[inst.kind](self, inst)
                inst.steps = built if isinstance(built, list) else [built]
                inst.step = inst.steps[-1]
                steps, task = inst.steps, inst.task
            cond = self.condition_of(task)
            if cond is None:
                top.extend(steps)
            else:
                branches.setdefault(cond.id, []).extend(steps)
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
                conditions=[compile_condition(group.comparison, self.resolve_for(None))],
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
            inst = Instance(step, sagemaker_name(step))
            self._of[id(step)] = inst
            self.instances.append(inst)

    def _units(self) -> list[Instance | fused.FusedJob]:
        """What to build, in order: a step, or a fused job once, after everything it reads.
        Without fusion, the plan's own order."""
        from kubesage.targets.sagemaker.fusion import fusion_plan

        assert self.plan is not None
        jobs = fused.fused_jobs(self, fusion_plan(self.plan, self.config))
        units: list[Instance | fused.FusedJob] = [
            i if i.group is None else i.group for i in self.instances
            if i.group is None or i is i.group.members[0]]
        if not jobs:
            return units
        unit_of = {id(m): (m.group or m) for m in self.instances}
        order: list[Instance | fused.FusedJob] = []
        placed: set[int] = set()
        while len(order) < len(units):  # a stable topological order of the units
            for unit in units:
                if id(unit) in placed:
                    continue
                members = unit.members if isinstance(unit, fused.FusedJob) else [unit]
                needs = {id(unit_of[id(self._of[id(d)])]) for m in members for d in m.plan.deps}
                if needs - {id(unit)} <= placed:
                    order.append(unit)
                    placed.add(id(unit))
                    break
            else:
                raise CompileError("the fused jobs wait for each other in a cycle; set fusion: off")
        return order

    def instance_of(self, step: Step) -> Instance:
        """The SageMaker step of a plan step."""
        return self._of[id(step)]

    def step_name_of(self, inst: Instance) -> str:
        """The definition step that runs ``inst``: its own, or its fused job's."""
        return inst.group.name if inst.group is not None else inst.name

    def condition_of(self, task: Task) -> Condition | None:
        conds = [g for g in task.groups if isinstance(g, Condition)]
        if len(conds) > 1:
            raise CompileError(
                f"task '{task.name}' sits in {len(conds)} nested Conditions; SageMaker target "
                "compiles one level: combine them into one Condition or move the task out"
            )
        return conds[0] if conds else None

    # -- values -----------------------------------------------------------------------
    def producer(self, out: TaskOutput, inst: Instance | None) -> Instance:
        assert self.plan is not None
        try:
            return self._of[id(self.plan.producer(out, inst.plan if inst else None))]
        except PlanError as e:
            raise CompileError(str(e)) from None

    def resolve_for(self, inst: Instance | None) -> Any:
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
                producer = self.producer(value, inst)
                if value.is_artifact:
                    return self.artifact_uri(producer, value.output)
                return self.json_get(producer, value.output)
            return value
        return resolve

    def artifact_uri(self, producer: Instance, output: str) -> Any:
        if producer.group is not None:
            return fused.output_uri(producer.group, producer, output)
        if producer.kind == "training":
            return producer.step.properties.ModelArtifacts.S3ModelArtifacts
        if producer.kind in ("processing", "transform"):  # a transform's outputs: its last step's
            return producer.step.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri
        raise CompileError(
            f"task '{producer.name}' is a registration step on SageMaker and has no artifact "
            f"'{output}' to read; connect the upstream model instead")

    def json_get(self, producer: Instance, name: str) -> Any:
        from sagemaker.core.workflow.functions import JsonGet
        from sagemaker.core.workflow.properties import PropertyFile

        if producer.task.spec.container is not None:
            raise CompileError(
                f"output '{name}' of task '{producer.name}' is read by a condition or another step, "
                f"but '{producer.task.spec.name}' is a container component (imported Kubeflow YAML): "
                "SageMaker reads values from a JSON property file, which its command does not "
                "write; pass the value on in an output artifact instead")
        if producer.group is not None:
            return fused.returned(producer.group, producer, name, self)
        if producer.kind not in ("processing", "transform"):
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

    def s3(self, inst: Instance, *parts: str) -> Any:
        """Where a step writes in S3: unique per execution (and per client inside a fan-out), so
        an execution never overwrites what an earlier one (or a cache hit of it) points at.
        SageMaker's step cache does not look at output locations: a hit reuses the earlier
        job's outputs at their own paths, and its properties name them, so the steps downstream
        of a hit read the same URIs as before and hit too."""

        return self.s3_for(inst.name, *parts)

    def s3_for(self, name: str, *parts: str) -> Any:
        """``s3`` for the definition step ``name`` (a fused job's)."""
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.core.workflow.functions import Join

        return Join(on="/", values=[self.config.s3(self.pipeline.name), *self.fan_out_keys(),
                                    ExecutionVariables.PIPELINE_EXECUTION_ID, name, *parts])

    def fan_out_keys(self) -> list[Any]:
        return [self.params[name] for name in sorted(set(self.fan_out.values()))]

    def checkpoints(self, inst: Instance) -> Any:
        """Where a training step keeps its checkpoints: named by what decides the training, never
        by the execution, since SageMaker's cache key of a training step includes its
        ``CheckpointConfig`` (an execution ID there would make every training a cache miss).

        The path holds a digest of what the definition fixes (component name, version and
        entry, image URI, each parameter's literal or expression, inputs, mounts, processes),
        then what only the run knows: the values of the pipeline parameters the step reads and
        the job name of each step it reads from (a new job when that step ran again, the
        earlier one when it was a cache hit). So the same location means the same training: a
        spot-interrupted job resumes its own checkpoints, and a later execution with the same
        inputs resumes what an earlier identical one left (a failed one's partial checkpoints;
        a finished one's last, which ends at once with the same weights), which is what the
        cache claims anyway: the training is determined by its inputs.
        """
        from sagemaker.core.helper.pipeline_variable import PipelineVariable
        from sagemaker.core.workflow.functions import Join
        from sagemaker.core.workflow.parameters import Parameter

        spec = inst.task.spec
        params, artifacts = self.arguments(inst)

        def form(value: Any) -> Any:
            return value.expr if isinstance(value, PipelineVariable) else value

        decided_by = {
            "component": [spec.name, spec.version, spec.entry],
            "image": self.config.image_uri(spec.image, spec.name),
            "parameters": {name: form(v) for name, v in params.items()},
            "inputs": {name: form(v) for name, v in artifacts.items()},
            "mounts": {name: [m.file_system_id, m.directory_path]
                       for name, m in ((name, self.mount(spec, name)) for name, _ in spec.mounts)},
            "processes": [self.config.hints(spec.name).instance_count
                          or inst.task.distribution.nodes, inst.task.distribution.procs_per_node],
        }
        digest = hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()[:16]
        values = [v for _, v in sorted(params.items()) if isinstance(v, Parameter)]
        producers = {p.name: p for p in (self.producer(v, inst) for v in inst.task.arguments.values()
                                         if isinstance(v, TaskOutput))}
        jobs = [self.job_name(p) for _, p in sorted(producers.items())]
        keys = [k for k in self.fan_out_keys() if not any(k is v for v in values)]
        return Join(on="/", values=[self.config.s3(self.pipeline.name), *keys, "checkpoints",
                                    inst.name, digest, *values, *jobs])

    @staticmethod
    def job_name(inst: Instance) -> Any:
        """The name of the job a processing or training step ran (or reused, on a cache hit)."""
        if inst.group is not None:
            props = inst.group.step.properties
            return props.TrainingJobName if inst.group.kind == "training" else props.ProcessingJobName
        if inst.kind == "training":
            return inst.step.properties.TrainingJobName
        return inst.step.properties.ProcessingJobName

    def arguments(self, inst: Instance) -> tuple[dict[str, Any], dict[str, Any]]:
        """(parameter name -> value, artifact input name -> S3 URI expression)."""
        resolve = self.resolve_for(inst)
        params, artifacts = {}, {}
        for arg, value in sorted(inst.task.arguments.items()):
            if inst.task.spec.input(arg) is not None:
                artifacts[arg] = resolve(value)
            else:
                params[arg] = resolve(value)
        return params, artifacts

    def metadata_sources(self, inst: Instance) -> dict[str, tuple[Any, str]]:
        """Input name -> (S3 URI of the producing processing step's result output, the output's
        name): where an input's metadata comes from (a training job's is in its model.tar.gz)."""
        found = {}
        for arg, value in sorted(inst.task.arguments.items()):
            if isinstance(value, TaskOutput) and value.is_artifact:
                source = self.metadata_source_of(self.producer(value, inst), value.output)
                if source is not None:
                    found[arg] = source
        return found

    def metadata_source_of(self, producer: Instance, output: str) -> tuple[Any, str] | None:
        """(S3 URI of the folder with the result file of ``producer``, the output's name), or
        None when its metadata travels inside the artifact (a training job's model.tar.gz)."""
        if producer.group is not None:
            return fused.metadata_source(producer.group, producer, output)
        if producer.kind in ("processing", "transform") and producer.task.spec.container is None:
            uri = producer.step.properties.ProcessingOutputConfig.Outputs[
                RESULT_OUTPUT].S3Output.S3Uri
            return uri, output
        return None

    def folder_of(self, producer: Instance, output: str) -> str:
        """The folder of ``producer``'s output inside what arrives ('' for the folder itself)."""
        if producer.group is not None:
            return fused.folder(producer.group, producer, output)
        return output if producer.kind == "training" else ""

    def input_layout(self, inst: Instance) -> dict[str, str]:
        """Input name -> folder inside what arrives (a training job's model.tar.gz holds one
        folder per output); '' when the artifact is the folder itself."""
        layout = {}
        for arg, value in sorted(inst.task.arguments.items()):
            if isinstance(value, TaskOutput) and value.is_artifact:
                layout[arg] = self.folder_of(self.producer(value, inst), value.output)
        return layout

    def mount(self, spec: ComponentSpec, name: str) -> Any:
        mount = self.config.mounts.get(name)
        if mount is None:
            raise KubesageError(
                f"component '{spec.name}' mounts '{name}', but {self.config.source} has no "
                f"'mounts.{name}'; add mounts: {{{name}: {{file_system_id: fs-..., "
                "directory_path: /abcdefgh/data, s3_uri: s3://...}}}}")
        return mount

    def model_input(self, inst: Instance, step: str) -> str:
        """The name of the one ``Model`` input of a task compiled to a ``step`` that serves or
        registers one model (a registration step, a batch transform)."""
        spec = inst.task.spec
        models = [a.name for a in spec.inputs if a.type == "Model"]
        if len(models) != 1:
            raise CompileError(
                f"component '{spec.name}' is mapped to a {step} (kind: {inst.kind}) and needs "
                f"exactly one Model input, it has {len(models)}; change its hint in "
                f"{self.config.source}")
        return models[0]

    def model_package_group(self, inst: Instance) -> Any:
        """The config's group; inside a fan-out, one group per item (``digits-classifier-acme``),
        which submission creates before it starts the executions."""
        from sagemaker.core.workflow.functions import Join

        loops = [g.id for g in inst.task.groups if isinstance(g, ParallelFor) and g.id in self.fan_out]
        if not loops:
            return self.config.model_package_group
        keys = [self.params[self.fan_out[loop]] for loop in loops]
        return Join(on="-", values=[self.config.model_package_group, *keys])

    def common(self, inst: Instance) -> dict[str, Any]:
        from sagemaker.mlops.workflow.retry import (
            SageMakerJobExceptionTypeEnum,
            SageMakerJobStepRetryPolicy,
        )
        from sagemaker.mlops.workflow.steps import CacheConfig

        out: dict[str, Any] = {"name": inst.name}
        assert self.plan is not None
        after = sorted(self.step_name_of(self._of[id(s)]) for t in inst.task.explicit_after
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


    def common_for(self, name: str, members: list[Instance]) -> dict[str, Any]:
        """``common`` for the fused job ``name``: what its members wait for outside it."""
        out = self.common(members[0])
        out["name"] = name
        assert self.plan is not None
        inside = {m.name for m in members}
        after = sorted({self.step_name_of(self._of[id(s)]) for m in members
                        for t in m.task.explicit_after for s in self.plan.of_task(t)
                        if self._of[id(s)].name not in inside})
        out.pop("depends_on", None)
        if after:
            out["depends_on"] = after
        return out


def definition_json(pipeline: Pipeline, config: SageMakerConfig) -> str:
    """The definition as canonical JSON text (sorted keys): the same input, the same bytes."""
    from kubesage.targets.sagemaker.session import pipeline_session, quiet_sdk_logs, sdk_context

    with sdk_context(config.region):
        session = pipeline_session(config)
        sdk_pipeline = Compiler(pipeline, config, session).build()
        quiet_sdk_logs()
        doc = json.loads(sdk_pipeline.definition())
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
