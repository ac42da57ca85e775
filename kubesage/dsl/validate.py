"""Whole-graph checks run when a pipeline is built: names, dangling references, cycles."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kubesage.dsl.channel import TaskOutput
from kubesage.dsl.errors import CycleError, DefinitionError, DuplicateNameError

if TYPE_CHECKING:
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.dsl.task import Task

# Kubernetes object names and KFP task names must be DNS-1123 labels.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# The names of the groups kubesage and the compilers make (Condition, ParallelFor, KFP's loops).
RESERVED_RE = re.compile(r"^(condition|loop|for-loop|exit-handler)-[0-9]+(-.*)?$")


def validate(pipeline: Pipeline) -> None:
    """Raise a ``DefinitionError`` subclass naming the first problem found."""
    if not NAME_RE.match(pipeline.name):
        raise DefinitionError(
            f"pipeline name '{pipeline.name}' must be lowercase letters, digits and '-' "
            "(at most 63); pass @pipeline(name='...')"
        )
    if not pipeline.tasks:
        raise DefinitionError(f"pipeline '{pipeline.name}' has no tasks; call a component in it")
    seen: dict[str, Task] = {}
    for task in pipeline.tasks:
        if task.name in seen:
            raise DuplicateNameError(
                f"pipeline '{pipeline.name}': two tasks are named '{task.name}' (components "
                f"'{seen[task.name].spec.name}' and '{task.spec.name}'); give one another name "
                "with .set_name('...')"
            )
        if RESERVED_RE.match(task.name):
            raise DefinitionError(
                f"task name '{task.name}' is reserved for the names of Condition and ParallelFor "
                "groups; rename it with .set_name('...')")
        if not NAME_RE.match(task.name):
            raise DefinitionError(
                f"task name '{task.name}' must be at most 63 lowercase letters, digits and '-' "
                f"(it names pods and steps; it has {len(task.name)} characters); rename it "
                "with .set_name('...')"
            )
        seen[task.name] = task
    members = {id(t) for t in pipeline.tasks}
    for task in pipeline.tasks:
        for arg, value in task.arguments.items():
            if isinstance(value, TaskOutput) and id(value.task) not in members:
                raise DefinitionError(
                    f"task '{task.name}', input '{arg}': {value.describe()} belongs to another "
                    "pipeline; create that task inside this pipeline function"
                )
        for dep in task.explicit_after:
            if id(dep) not in members:
                raise DefinitionError(
                    f"task '{task.name}' runs after '{dep.name}', which belongs to another "
                    "pipeline"
                )
    topological_order(pipeline)


def topological_order(pipeline: Pipeline) -> list[Task]:
    """Tasks ordered so that each comes after everything it depends on; CycleError if none."""
    order: list[Task] = []
    state: dict[int, str] = {}

    def visit(task: Task, path: list[Task]) -> None:
        mark = state.get(id(task))
        if mark == "done":
            return
        if mark == "active":
            cycle = path[path.index(task):] + [task]
            raise CycleError(
                f"pipeline '{pipeline.name}' has a cycle: "
                f"{' -> '.join(t.name for t in cycle)}; remove one of these dependencies "
                "(an .after() call or a data connection)"
            )
        state[id(task)] = "active"
        for dep in task.upstream():
            visit(dep, path + [task])
        state[id(task)] = "done"
        order.append(task)

    for task in pipeline.tasks:
        visit(task, [])
    return order
