"""The plan's graph as a run record keeps it: each step's upstream steps and groups, and each
loop and condition written the way the user wrote it (``ParallelFor(clients)``,
``Condition(evaluate.output >= threshold)``), so a console draws a run's graph from its record
alone, on any machine, long after the pipeline file changed.
"""

from __future__ import annotations

from typing import Any

from kubesage.dsl.channel import Channel, Comparison, LoopItem, PipelineParam, TaskOutput
from kubesage.dsl.control import Condition, Group, ParallelFor
from kubesage.plan.steps import Plan, PlanError, Step


def written(value: Any) -> str:
    """A run-time value or a constant as it reads in pipeline code."""
    if isinstance(value, PipelineParam):
        return value.name
    if isinstance(value, TaskOutput):
        if value.output == "output" or value.task.spec.output_names == [value.output]:
            return f"{value.task.name}.output"
        return f"{value.task.name}.outputs[{value.output!r}]"
    if isinstance(value, LoopItem):
        return f"item.{value.field}" if value.field else "item"
    if isinstance(value, Channel):
        return value.describe()
    if isinstance(value, Comparison):
        return f"{written(value.left)} {value.op} {written(value.right)}"
    return repr(value)


def written_group(group: Group) -> str:
    """``ParallelFor(clients)`` or ``Condition(score.output >= threshold)``."""
    if isinstance(group, ParallelFor):
        return f"ParallelFor({written(group.items)})"
    if isinstance(group, Condition):
        return f"Condition({written(group.comparison)})"
    return group.id


def plan_groups(plan: Plan) -> dict[str, dict[str, Any]]:
    """Every loop and condition of the plan's pipeline: ``{"kind", "written"}``, and a loop's
    items (when the plan knows them)."""
    out: dict[str, dict[str, Any]] = {}
    for group in plan.pipeline.groups:
        doc: dict[str, Any] = {"kind": group.kind, "written": written_group(group)}
        if isinstance(group, ParallelFor):
            try:
                doc["items"] = plan.loop_items(group)
            except PlanError:  # a loop over a parameter the plan has no value for
                doc["items"] = []
        out[group.id] = doc
    return out


def step_graph(step: Step) -> tuple[list[str], list[str]]:
    """The step's upstream steps (names) and its groups (IDs, outermost first)."""
    return [d.name for d in step.deps], [g.id for g in step.task.groups]
