"""Fusion on SageMaker: the start-cost table, instance prices, and how each step runs alone.

Start costs (``START_COSTS``), each with its source:

- a processing job takes about 2 minutes to start (aws/amazon-sagemaker-feedback#109); a
  30-second script took 8 min 17 s in all (aws/sagemaker-python-sdk#4358), and ZenML's SageMaker
  docs warn that steps "can take 5-15 minutes to start": 120 s is the low end;
- a training job's "Starting" phase averaged 116 s over 36 jobs (aws-samples/sagemaker-bencher);
- a batch transform job: no published figure; taken as a processing job's.

What ``kubesage.plan.fusion`` may fuse here: processing steps (with each other, or as leaders and
followers of a training step, which makes the group a training job on the training step's
instance type), and the steps after a batch transform, which run in its last processing job.
A registration step is a ``ModelStep``, no job; a processing step on several instances, a
container component (its own command line) and a multi-host step's leaders run alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kubesage.dsl.channel import TaskOutput
from kubesage.dsl.pipeline import Pipeline
from kubesage.plan import Plan, Step
from kubesage.plan.costs import CostModel, Price, StartCost
from kubesage.plan.fusion import FusionPlan, Placement, plan_fusion

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.config import SageMakerConfig

START_COSTS = {
    "processing": StartCost(120, "aws/amazon-sagemaker-feedback#109: about 2 minutes"),
    "training": StartCost(116, "aws-samples/sagemaker-bencher: Starting phase, mean of 36 jobs"),
    "transform": StartCost(120, "assumed as a processing job's; no published figure"),
}
_PRICED = ("SageMaker on-demand, us-east-1, aws.amazon.com/sagemaker/pricing (2025); "
           "set fusion.prices to your own")
PRICES = {name: Price(per_hour, _PRICED) for name, per_hour in (
    ("ml.m5.large", 0.115), ("ml.m5.xlarge", 0.23), ("ml.c5.xlarge", 0.204),
    ("ml.g4dn.xlarge", 0.736), ("ml.g5.xlarge", 1.408), ("ml.g5.2xlarge", 1.515),
    ("ml.p3.2xlarge", 3.825))}

# The service's limits one fused job must fit (CreateProcessingJob, CreateTrainingJob).
MAX_PROCESSING_INPUTS = 10  # ProcessingInputs
MAX_ARGUMENTS = 256  # AppSpecification.ContainerArguments
MAX_CHANNELS = 20  # InputDataConfig
MAX_HYPERPARAMETERS = 100  # HyperParameters
NUMERIC = ("int", "float")  # what a training job reports (FinalMetricDataList)


class SageMakerFusion:
    """``kubesage.plan.fusion.FusionTarget`` for one pipeline compiled with one config."""

    name = "sagemaker"

    def __init__(self, plan: Plan, config: SageMakerConfig) -> None:
        self.plan = plan
        self.config = config

    def placement(self, step: Step) -> Placement:
        from kubesage.targets.sagemaker.compiler import step_kind

        task, spec = step.task, step.task.spec
        hints = self.config.hints(spec.name)
        kind = step_kind(spec, self.config, task.distribution)
        gpus = task.resources.node_gpus(task.distribution.procs_per_node) > 0
        if kind == "register":
            return Placement(alone="a registration step is a ModelStep, no job")
        if kind == "transform":
            instance = hints.instance_type or self.config.processing_instance_type
            return Placement("processing", instance, (("processing", 2), ("transform", 1)),
                             anchor=True, leaders=False, gpus=gpus)
        if kind == "training":
            nodes = hints.instance_count or task.distribution.nodes
            instance = hints.instance_type or self.config.training_instance_type
            return Placement("training", instance, (("training", 1),), anchor=True, nodes=nodes,
                             world_size=nodes * task.distribution.procs_per_node,
                             leaders=nodes == 1, gpus=gpus)
        instance = hints.instance_type or self.config.processing_instance_type
        alone = ""
        if spec.container is not None:
            alone = "a container component runs its own image and command line"
        elif (hints.instance_count or 1) > 1:
            alone = f"it runs on {hints.instance_count} instances"
        return Placement("processing", instance, (("processing", 1),), alone=alone,
                         world_size=task.distribution.world_size, gpus=gpus)

    def fits(self, members: Sequence[Step]) -> str:
        """The limits of one job: inputs, channels, arguments, hyperparameters; a training job
        reports returned values only as numbers."""
        inside = {id(m) for m in members}
        placements = [self.placement(m) for m in members]
        training = any(p.job == "training" for p in placements)
        external: set[tuple[int, str]] = set()
        mounts: set[str] = set()
        arguments = parameters = 0
        for member in members:
            spec = member.task.spec
            mounts |= {name for name, _ in spec.mounts}
            for name, value in member.task.arguments.items():
                if isinstance(value, TaskOutput) and value.is_artifact:
                    producer = self.plan.producer(value, member)
                    if id(producer) not in inside:
                        external.add((id(producer), value.output))
                        external.add((id(producer), value.output + "-metadata"))
                elif spec.input(name) is None:
                    parameters += 1
            arguments += 6 + 3 * len(member.task.arguments) + 2 * len(spec.mounts)
        inputs = len(external) + len(mounts)
        if training:
            if inputs > MAX_CHANNELS:
                return f"a training job takes at most {MAX_CHANNELS} channels, the group needs {inputs}"
            if parameters + len(members) + 1 > MAX_HYPERPARAMETERS:
                return f"a training job takes at most {MAX_HYPERPARAMETERS} hyperparameters"
            return self._numeric_returns(members, inside)
        if inputs > MAX_PROCESSING_INPUTS:
            return (f"a processing job takes at most {MAX_PROCESSING_INPUTS} inputs, the group "
                    f"needs {inputs}")
        if arguments > MAX_ARGUMENTS:
            return f"a processing job takes at most {MAX_ARGUMENTS} arguments"
        return ""

    def _numeric_returns(self, members: Sequence[Step], inside: set[int]) -> str:
        for step in self.plan.steps:
            values = list(step.task.arguments.values())
            for group in step.task.groups:
                values.extend(group.channels())
            for value in values:
                if not isinstance(value, TaskOutput) or value.is_artifact:
                    continue
                producer = next((m for m in members if m.task is value.task), None)
                if producer is None or (id(step) in inside and step.task is not value.task):
                    continue
                ret = next(r for r in producer.task.spec.returns if r.name == value.output)
                if ret.type not in NUMERIC:
                    return (f"{producer.name} returns '{ret.name}' ({ret.type}), which "
                            f"{step.name} reads; a training job reports returned values only "
                            "as numbers (FinalMetricDataList)")
        return ""


def fusion_plan(plan: Plan, config: SageMakerConfig) -> FusionPlan:
    """The groups the compiler builds for ``plan`` (its literal loops expanded)."""
    cost = CostModel.of(START_COSTS, PRICES, config.fusion)
    return plan_fusion(plan, SageMakerFusion(plan, config), config.fusion, cost)


def explain(pipeline: Pipeline, config_path: str | None = None) -> str:
    """``compile --explain`` for SageMaker: per execution (one per client of a fan-out)."""
    from kubesage.plan.explain import explain as explain_text
    from kubesage.targets.sagemaker.compiler import sagemaker_name
    from kubesage.targets.sagemaker.config import load_config
    from kubesage.targets.sagemaker.fused import job_name
    from kubesage.targets.sagemaker.parameters import fan_out_parameters

    config = load_config(config_path)
    fan_out = fan_out_parameters(pipeline)
    plan = Plan(pipeline, None, expand=lambda loop: loop.id not in fan_out)
    fusion = fusion_plan(plan, config)
    return explain_text(fusion, plan, lambda g: job_name(
        sagemaker_name(g.members[0]), sagemaker_name(g.members[-1])),
        per="execution" if fan_out else "run")
