"""Fusion on Kubeflow Pipelines: the start-cost table, node prices, and how each task runs alone.

A KFP v2 task is two pods, a driver and an executor (kubeflow/pipelines#12642), each waiting
for Argo's scheduling and requeue gaps: argo-workflows#6262 measured 133 s of work in 281 s over
14 one-pod steps, about 10.6 s per pod. ``START_COSTS`` takes 21 s per task (two pods). A fused
group is one container task: one driver and one executor pod instead of 2N.

A task fuses with the tasks it reads from (``kubesage.plan.fusion``) unless it is a container
component (its own image and command line) or trains on several nodes (a Kubeflow Trainer
TrainJob its launcher creates). Tasks are grouped once, not per loop item: a fused task inside a
``ParallelFor`` runs once per item, as its members did.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubesage.dsl.control import ParallelFor
from kubesage.dsl.pipeline import Pipeline
from kubesage.plan import Plan, Step
from kubesage.plan.costs import CostModel, FusionSettings, Price, StartCost
from kubesage.plan.fusion import FusionPlan, Placement, plan_fusion

POD_S = (281 - 133) / 14  # argo-workflows#6262: the gaps between 14 steps' pods
START_COSTS = {"task": StartCost(round(2 * POD_S), "2 pods (driver, executor; "
                                 "kubeflow/pipelines#12642) x 10.6 s (argo-workflows#6262)")}
_PRICED = "EC2 on-demand, us-east-1, aws.amazon.com/ec2/pricing (2025); set fusion.prices"
PRICES = {"cpu": Price(0.192, f"a CPU node, m5.xlarge; {_PRICED}"),
          "gpu": Price(1.212, f"a GPU node, g5.2xlarge; {_PRICED}")}
PODS_PER_TASK = 2  # driver and executor


class KfpFusion:
    """``kubesage.plan.fusion.FusionTarget`` for Kubeflow: one container task per group."""

    name = "kfp"

    def placement(self, step: Step) -> Placement:
        task = step.task
        gpus = task.resources.node_gpus(task.distribution.procs_per_node) > 0
        alone = ""
        if task.spec.container is not None:
            alone = "a container component runs its own image and command line"
        elif task.distribution.nodes > 1:
            alone = "a multi-node step is a Kubeflow Trainer TrainJob its launcher creates"
        return Placement("task", "gpu" if gpus else "cpu", (("task", 1),), PODS_PER_TASK,
                         alone=alone, world_size=task.distribution.world_size, gpus=gpus)

    def __init__(self, pipeline: Pipeline | None = None) -> None:
        from kubesage.targets.kfp.fused import condition_reads

        self.conditions = condition_reads(pipeline.groups) if pipeline is not None else set()

    def fits(self, members: Sequence[Step]) -> str:
        """At most one returned value of a group decides a condition: the task's ``Output``,
        the only name kfp.local's conditions resolve."""
        read = sorted(f"{m.name}.{r.name}" for m in members for r in m.task.spec.returns
                      if (id(m.task), r.name) in self.conditions)
        if len(read) > 1:
            return (f"conditions read {' and '.join(read)}; a task gives a condition one value "
                    "(its Output)")
        return ""


def task_plan(pipeline: Pipeline) -> Plan:
    """One step per task: Kubeflow compiles tasks, and a loop runs each task once per item."""
    return Plan(pipeline, None, expand=lambda loop: False)


def fusion_plan(pipeline: Pipeline, settings: FusionSettings) -> tuple[Plan, FusionPlan]:
    """The task groups the compiler builds."""
    plan = task_plan(pipeline)
    cost = CostModel.of(START_COSTS, PRICES, settings)
    return plan, plan_fusion(plan, KfpFusion(pipeline), settings, cost)


def explain(pipeline: Pipeline, config_path: str | None = None) -> str:
    """``compile --explain`` for Kubeflow: per run, a loop's tasks counted once (each runs once
    per item)."""
    from kubesage.plan.explain import explain as explain_text
    from kubesage.targets.kfp.config import load_kfp_config

    config = load_kfp_config(config_path)
    plan, fusion = fusion_plan(pipeline, config.fusion)
    loops = any(isinstance(g, ParallelFor) for s in plan.steps for g in s.task.groups)
    return explain_text(fusion, plan, lambda g: f"{g.members[0].name}-to-{g.members[-1].name}",
                        per="run, a loop's tasks once" if loops else "run")
