"""The execution plan every path reads: a pipeline's tasks expanded into steps (one per loop
item), their dependencies, producers and conditions (``steps``)."""

from kubesage.plan.steps import Plan, PlanError, Step, step_name

__all__ = ["Plan", "PlanError", "Step", "step_name"]
