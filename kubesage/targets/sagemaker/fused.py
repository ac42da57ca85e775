"""Fused jobs: a group of steps (``kubesage.plan.fusion``) compiled to one SageMaker job.

- **Processing group**: one ``ProcessingStep`` running ``sagemaker_processing`` with one
  ``--member`` section per member. Inputs from outside the group are its processing inputs (one
  per source, shared by the members reading it); an artifact a member makes for a later one
  stays on the job's disk. Every member's outputs and its result go to the job's one output,
  ``kubesage-members/<member>/...``, uploaded continuously (what finished members wrote reaches
  S3 even when a later member fails); each member keeps its own property file
  (``<member>/kubesage-result/result.json``), so conditions and later steps read it as before.
- **Training group** (a training step with the steps around it): one ``TrainingStep``. The
  training member writes what it writes unfused (``model.tar.gz``, which registration and batch
  transform read as before); the others write into the job's output data (``output.tar.gz``,
  ``<member>/<output>`` inside). A training job has no property files: a returned value read
  outside the group is printed by the runtime and read back as a metric definition
  (``FinalMetricDataList['<member>:<name>'].Value``). Checkpoints, managed spot and warm pools
  work as for any training job; the checkpoint location is named by what decides all members.
- **Batch transform with followers**: the transform's last processing job (the one collecting
  its answers) is a processing group whose first member collects.

A fused step's name is ``<first>-to-<last>``; the cache key of a job covers its members, since
it is the job's request, which holds every member's arguments.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubesage.dsl.channel import TaskOutput
from kubesage.dsl.control import Condition
from kubesage.plan.fusion import FusionPlan, group_instance
from kubesage.runtime import sagemaker_training as training_contract
from kubesage.runtime.context import STEP_ENV
from kubesage.runtime.members import (
    MEMBER_FLAG,
    MEMBER_KEY,
    MEMBERS_KEY,
    MEMBERS_OUTPUT,
    return_regex,
)
from kubesage.runtime.sagemaker_processing import ENTRYPOINT as PROCESSING_ENTRYPOINT
from kubesage.runtime.sagemaker_processing import (
    METADATA_SUFFIX,
    PROCESSING,
    RESULT_FILE,
    RESULT_OUTPUT,
)
from kubesage.targets.sagemaker.limits import GPUS_ENV, gpu_env
from kubesage.targets.sagemaker.parameters import as_string

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.compiler import Compiler, Instance

MAX_NAME = 64  # a step name (limits.NAME)
TRAINING_DATA = "/opt/ml/input/data"


@dataclass(eq=False)
class FusedJob:
    """One job running several plan steps, in order."""

    name: str
    members: list[Instance]
    kind: str  # the definition step running the members: "processing" or "training"
    instance_type: str
    anchor: Instance | None = None  # the training or batch-transform member
    step: Any = None  # the SDK step running the members
    steps: list[Any] = field(default_factory=list)  # every SDK step of the group, in order
    property_files: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    metrics: set[tuple[str, str]] = field(default_factory=set)  # (member, returned value)

    def has(self, inst: Instance) -> bool:
        return any(m is inst for m in self.members)


def metric_name(member: str, returned: str) -> str:
    """The metric a training job reports a member's returned value as (``evaluate:output``, the
    service's own ``split:metric`` form; a dot would split the property path)."""
    return f"{member}:{returned}"


def job_name(first: str, last: str) -> str:
    """``<first>-to-<last>``, shortened with a digest where it would pass 64 characters."""
    name = f"{first}-to-{last}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - 9]}-{digest}"


def fused_jobs(c: Compiler, fusion: FusionPlan) -> list[FusedJob]:
    """A ``FusedJob`` per fused group; each member instance learns its job."""
    from kubesage.targets.sagemaker.compiler import CompileError, step_kind

    jobs = []
    names = {inst.name for inst in c.instances}
    for group in fusion.fused:
        members = [c.instance_of(s) for s in group.members]
        for inst in members:
            inst.kind = step_kind(inst.task.spec, c.config, inst.task.distribution)
        anchor = next((m for m in members if m.kind in ("training", "transform")), None)
        name = job_name(members[0].name, members[-1].name)
        if name in names:
            raise CompileError(f"the fused job {name} has the name of a step; rename task "
                               f"'{members[0].task.name}' or set fusion: off")
        names.add(name)
        kind = "training" if anchor is not None and anchor.kind == "training" else "processing"
        job = FusedJob(name, members, kind, group_instance(group.placements, fusion.cost), anchor)
        job.metrics = _read_outside(c, job) if kind == "training" else set()
        for inst in members:
            inst.group = job
        jobs.append(job)
    return jobs


def _read_outside(c: Compiler, job: FusedJob) -> set[tuple[str, str]]:
    """(member, returned value) pairs something outside the job reads."""
    tasks = {id(m.task): m for m in job.members}
    found = set()
    readers: list[tuple[Any, bool]] = []
    for inst in c.instances:
        readers += [(v, job.has(inst)) for v in inst.task.arguments.values()]
    for group in c.pipeline.groups:
        if isinstance(group, Condition):
            readers += [(v, False) for v in group.channels()]
    for value, inside in readers:
        if isinstance(value, TaskOutput) and not value.is_artifact and not inside \
                and id(value.task) in tasks:
            for member in job.members:
                if member.task is value.task:
                    found.add((member.name, value.output))
    return found


def build(c: Compiler, job: FusedJob) -> list[Any]:
    """The SDK steps of a fused job, in order; the last one runs the members."""
    from kubesage.targets.sagemaker.transform import transform

    if job.anchor is not None and job.anchor.kind == "transform":
        anchor = job.anchor
        return transform(c, anchor, lambda env, only, extra: _processing(
            c, job, (env, only, extra)))
    if job.kind == "training":
        return [_training(c, job)]
    return [_processing(c, job, None)]


# -- what consumers read --------------------------------------------------------------------
def output_uri(job: FusedJob, member: Instance, output: str) -> Any:
    """The S3 URI of a member's output artifact."""
    from sagemaker.core.workflow.functions import Join

    props = job.step.properties
    if job.kind == "training":
        if member is job.anchor:
            return props.ModelArtifacts.S3ModelArtifacts
        return Join(on="/", values=[props.OutputDataConfig.S3OutputPath, props.TrainingJobName,
                                    "output", "output.tar.gz"])
    uri = props.ProcessingOutputConfig.Outputs[MEMBERS_OUTPUT].S3Output.S3Uri
    return Join(on="/", values=[uri, member.name, output])


def metadata_source(job: FusedJob, member: Instance, output: str) -> tuple[Any, str] | None:
    """(S3 URI of the folder holding the member's result file, the output's name), or None
    where the metadata travels inside the artifact's archive (a training job's)."""
    from sagemaker.core.workflow.functions import Join

    if job.kind == "training" or member.task.spec.container is not None:
        return None
    uri = job.step.properties.ProcessingOutputConfig.Outputs[MEMBERS_OUTPUT].S3Output.S3Uri
    return Join(on="/", values=[uri, member.name, RESULT_OUTPUT]), output


def folder(job: FusedJob, member: Instance, output: str) -> str:
    """The folder of an output inside what its URI delivers ('' when it is the folder)."""
    if job.kind != "training":
        return ""
    return output if member is job.anchor else f"{member.name}/{output}"


def returned(job: FusedJob, member: Instance, name: str, c: Compiler) -> Any:
    """A value the member returned, as a pipeline expression."""
    from sagemaker.core.workflow.functions import JsonGet
    from sagemaker.core.workflow.properties import PropertyFile

    if job.kind == "training":
        return job.step.properties.FinalMetricDataList[metric_name(member.name, name)].Value
    hint = c.config.hints(member.task.spec.name).returns.get(name)
    output, path, json_path = hint or (RESULT_OUTPUT, RESULT_FILE, f"returns.{name}")
    key = (member.name, output, path)
    if key not in job.property_files:
        pf = PropertyFile(name=f"{member.name}-{output}-{path.rsplit('.', 1)[0]}".replace("/", "-"),
                          output_name=MEMBERS_OUTPUT, path=f"{member.name}/{output}/{path}")
        job.property_files[key] = pf
        job.step.property_files.append(pf)
    return JsonGet(step_name=job.name, property_file=job.property_files[key], json_path=json_path)


# -- the job's inputs -----------------------------------------------------------------------
class _Inputs:
    """The channels of one fused job: one per source artifact, shared by its readers."""

    def __init__(self, c: Compiler, job: FusedJob) -> None:
        self.c = c
        self.job = job
        self.items: dict[str, Any] = {}  # channel -> S3 URI
        self.by_source: dict[tuple[int, str], str] = {}
        self.mounts: dict[str, Any] = {}  # mount name -> its channel's data source

    def artifact(self, inst: Instance, arg: str, value: TaskOutput) -> tuple[str, str, list[str]]:
        """(channel, folder inside it, [metadata channel, output] or [])."""
        c = self.c
        producer = c.producer(value, inst)
        key = (id(producer), value.output)
        channel = self.by_source.get(key)
        if channel is None:
            channel = f"{inst.name}-{arg}"
            self.by_source[key] = channel
            self.items[channel] = c.resolve_for(inst)(value)
            source = c.metadata_source_of(producer, value.output)
            if source is not None:
                self.items[channel + METADATA_SUFFIX] = source[0]
        meta = [channel + METADATA_SUFFIX, value.output] if channel + METADATA_SUFFIX in \
            self.items else []
        return channel, c.folder_of(producer, value.output), meta


def _internal(c: Compiler, job: FusedJob, inst: Instance, value: Any) -> Instance | None:
    """The member of ``job`` whose output ``value`` is, or None."""
    if not isinstance(value, TaskOutput):
        return None
    producer = c.producer(value, inst)
    return producer if job.has(producer) else None


def _member_args(c: Compiler, job: FusedJob, inst: Instance, inputs: _Inputs,
                 first: tuple[dict[str, Any], set[str], dict[str, Any]] | None) -> list[Any]:
    """One member's ``--member`` section of a fused processing job."""
    spec = inst.task.spec
    env, only, extra = first or ({}, None, {})
    args: list[Any] = [MEMBER_FLAG, inst.name, "--entry", spec.entry]
    for arg, value in sorted(inst.task.arguments.items()):
        producer = _internal(c, job, inst, value)
        if spec.input(arg) is not None:
            if only is not None and arg not in only:
                continue
            if producer is not None:
                args += ["--local", f"{arg}={producer.name}:{value.output}"]
                continue
            channel, inner, meta = inputs.artifact(inst, arg, value)
            args += ["--input", f"{arg}={channel}:{inner}"]
            if meta:
                args += ["--metadata", f"{arg}={meta[0]}:{meta[1]}"]
        elif producer is not None:
            args += ["--param-from", arg, f"{producer.name}:{value.output}"]
        else:
            args += ["--param", arg, as_string(c.resolve_for(inst)(value))]
    for name, target in spec.mounts if only is None else ():
        inputs.mounts.setdefault(name, c.mount(spec, name).s3_uri)
        args += ["--mount", f"{target}={PROCESSING}/mounts/{name}"]
    for key, value in sorted(env.items()):
        args += ["--env", f"{key}={value}"]
    inputs.items.update({name: uri for name, (uri, _) in extra.items()})
    return args


def _job_env(job: FusedJob) -> dict[str, str]:
    gpus = max((int(gpu_env(m.task).get(GPUS_ENV, 0)) for m in job.members), default=0)
    return {STEP_ENV: job.name, **({GPUS_ENV: str(gpus)} if gpus else {})}


def _volume(c: Compiler, job: FusedJob) -> int:
    return max(c.config.hints(m.task.spec.name).volume_size_gb or 30 for m in job.members)


def _processing(c: Compiler, job: FusedJob,
                first: tuple[dict[str, Any], set[str], dict[str, Any]] | None) -> Any:
    from kubesage.targets.sagemaker.processing import processing_job

    inputs = _Inputs(c, job)
    args: list[Any] = []
    for i, inst in enumerate(job.members):
        args += _member_args(c, job, inst, inputs, first if i == 0 else None)
    local = {name: f"{PROCESSING}/input/{name}" for name in inputs.items}
    local.update({name: path for name, (_, path) in (first[2] if first else {}).items()})
    channels = {name: (uri, local[name]) for name, uri in inputs.items.items()}
    channels.update({f"mount-{name}": (uri, f"{PROCESSING}/mounts/{name}")
                     for name, uri in sorted(inputs.mounts.items())})
    spec = job.members[0].task.spec
    return processing_job(
        c, base_job_name=job.name, image_uri=c.config.image_uri(spec.image, spec.name),
        instance_type=job.instance_type, volume_gb=_volume(c, job), inputs=channels,
        outputs=[(MEMBERS_OUTPUT, c.s3_for(job.name, MEMBERS_OUTPUT))],
        entrypoint=PROCESSING_ENTRYPOINT, arguments=args, env=_job_env(job), instance_count=1,
        common=c.common_for(job.name, job.members), upload="Continuous")


def _training_layout(c: Compiler, job: FusedJob, inst: Instance, inputs: _Inputs,
                     hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """One member's layout in a fused training job (its parameters go to ``hyperparameters``)."""
    spec = inst.task.spec
    layout: dict[str, Any] = {"entry": spec.entry, "anchor": inst is job.anchor, "inputs": {},
                              "metadata": {}, "local": {}, "param_from": {}, "mounts": {}}
    for arg, value in sorted(inst.task.arguments.items()):
        producer = _internal(c, job, inst, value)
        if spec.input(arg) is not None:
            if producer is not None:
                layout["local"][arg] = [producer.name, value.output]
                continue
            channel, inner, meta = inputs.artifact(inst, arg, value)
            layout["inputs"][arg] = [channel, inner]
            if meta:
                layout["metadata"][arg] = meta
        elif producer is not None:
            layout["param_from"][arg] = [producer.name, value.output]
        else:
            hyperparameters[f"{inst.name}.{arg}"] = as_string(c.resolve_for(inst)(value))
    for name, target in spec.mounts:
        inputs.mounts.setdefault(name, c.mount(spec, name))
        layout["mounts"][target] = f"{TRAINING_DATA}/{name}"
    return layout


def _training(c: Compiler, job: FusedJob) -> Any:
    from sagemaker.core.shapes import FileSystemDataSource
    from sagemaker.core.training.configs import InputData

    from kubesage.targets.sagemaker.training import training_job

    assert job.anchor is not None
    anchor = job.anchor
    inputs = _Inputs(c, job)
    hyperparameters: dict[str, Any] = {MEMBERS_KEY: json.dumps([m.name for m in job.members])}
    for inst in job.members:
        layout = _training_layout(c, job, inst, inputs, hyperparameters)
        hyperparameters[MEMBER_KEY + inst.name] = json.dumps(layout, sort_keys=True)
    channels = [InputData(channel_name=name, data_source=uri) for name, uri in inputs.items.items()]
    for name, mount in sorted(inputs.mounts.items()):
        channels.append(InputData(channel_name=name, data_source=FileSystemDataSource(
            file_system_id=mount.file_system_id, file_system_type="FSxLustre",
            directory_path=mount.directory_path, file_system_access_mode="ro")))
    hints = c.config.hints(anchor.task.spec.name)
    spec = anchor.task.spec
    return training_job(
        c, name=job.name, image_uri=c.config.image_uri(spec.image, spec.name),
        instance_type=job.instance_type,
        instance_count=hints.instance_count or anchor.task.distribution.nodes,
        volume_gb=_volume(c, job), output=c.s3_for(job.name), checkpoints=checkpoints(c, job),
        hyperparameters=hyperparameters,
        environment={**_job_env(job), training_contract.PROCS_ENV:
                     str(anchor.task.distribution.procs_per_node)},
        channels=channels, common=c.common_for(job.name, job.members),
        metrics={metric_name(m, r): return_regex(m, r) for m, r in sorted(job.metrics)})


def checkpoints(c: Compiler, job: FusedJob) -> Any:
    """Where a fused training job keeps its checkpoints (and its finished members): named by
    what decides every member, as ``Compiler.checkpoints`` names a training step's."""
    from sagemaker.core.helper.pipeline_variable import PipelineVariable
    from sagemaker.core.workflow.functions import Join
    from sagemaker.core.workflow.parameters import Parameter

    def form(value: Any) -> Any:
        return value.expr if isinstance(value, PipelineVariable) else value

    decided, values, producers = [], {}, {}
    for inst in job.members:
        spec = inst.task.spec
        given: dict[str, Any] = {}
        for arg, value in sorted(inst.task.arguments.items()):
            producer = _internal(c, job, inst, value)
            if producer is not None:
                given[arg] = f"{producer.name}:{value.output}"
                continue
            resolved = c.resolve_for(inst)(value)
            given[arg] = form(resolved)
            if isinstance(resolved, Parameter):
                values[resolved.name] = resolved
            if isinstance(value, TaskOutput):
                found = c.producer(value, inst)
                producers[c.step_name_of(found)] = found
        decided.append({"component": [spec.name, spec.version, spec.entry],
                        "image": c.config.image_uri(spec.image, spec.name), "arguments": given,
                        "mounts": sorted(name for name, _ in spec.mounts),
                        "processes": [inst.task.distribution.nodes,
                                      inst.task.distribution.procs_per_node]})
    digest = hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:16]
    jobs = [c.job_name(p) for _, p in sorted(producers.items())]
    keys = [k for k in c.fan_out_keys() if not any(k is v for v in values.values())]
    return Join(on="/", values=[c.config.s3(c.pipeline.name), *keys, "checkpoints", job.name,
                                digest, *[v for _, v in sorted(values.items())], *jobs])
