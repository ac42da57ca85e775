"""The execution plan: a pipeline's tasks expanded into steps, with their dependencies.

Every execution path reads the same plan. The local runner schedules its steps; a Kubeflow local
run and a SageMaker local run name their records after them; the SageMaker compiler unrolls
literal loops with it. A ``ParallelFor`` item is a step of its own (``train[1]``); conditions are
the ``Condition`` groups around a step's task; a step's producers are found the same way
everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesage.dsl.channel import Channel, LoopItem, PipelineParam, TaskOutput
from kubesage.dsl.control import Condition, ParallelFor
from kubesage.dsl.errors import DefinitionError
from kubesage.dsl.pipeline import Pipeline
from kubesage.dsl.task import Task
from kubesage.dsl.validate import topological_order

MAX_STEPS = 10_000  # in one run: beyond it, a fan-out is a mistake (or one run per part)


class PlanError(DefinitionError):
    """A pipeline cannot be expanded into steps (a loop over an unknown list, say)."""


def step_name(task: Task, index: tuple[int, ...]) -> str:
    """``train`` outside loops, ``train[1]`` for item 1 of its loop, ``t[0][2]`` when nested."""
    return task.name + "".join(f"[{i}]" for i in index)


@dataclass(eq=False)
class Step:
    """One executable copy of a task: ``index`` picks an item of each expanded enclosing loop."""

    task: Task
    index: tuple[int, ...]
    name: str
    loops: tuple[ParallelFor, ...]  # the task's expanded loops, outermost first
    deps: list[Step] = field(default_factory=list)

    @property
    def conditions(self) -> list[Condition]:
        """The ``Condition`` groups the step's task sits in, outermost first."""
        return [g for g in self.task.groups if isinstance(g, Condition)]

    def __repr__(self) -> str:
        return f"<step {self.name}>"


class Plan:
    """The steps of ``pipeline`` for parameter ``values``, in dependency order.

    ``expand`` decides which loops become steps per item (all by default). A loop left
    unexpanded stays one step: the SageMaker compiler leaves a loop over a list parameter to
    submission, which starts one execution per item. Expanding a loop over a parameter needs
    ``values``.
    """

    def __init__(self, pipeline: Pipeline, values: dict[str, Any] | None = None,
                 expand: Callable[[ParallelFor], bool] = lambda loop: True) -> None:
        self.pipeline = pipeline
        self.values = values
        self._expand = expand
        self.steps: list[Step] = []
        self._by_task: dict[int, dict[tuple[int, ...], Step]] = {}
        for task in topological_order(pipeline):
            loops = tuple(g for g in task.groups if isinstance(g, ParallelFor) and expand(g))
            sizes = [len(self.loop_items(g)) for g in loops]
            count = 1
            for size in sizes:
                count *= size
            if count > MAX_STEPS:
                raise PlanError(
                    f"task '{task.name}' in {', '.join(g.id for g in loops)} expands to {count} "
                    f"steps, more than {MAX_STEPS} in one run; loop over a list parameter and "
                    "run a part at a time")
            copies: dict[tuple[int, ...], Step] = {}
            for index in itertools.product(*(range(n) for n in sizes)):
                step = Step(task, index, step_name(task, index), loops)
                for dep in task.upstream():
                    step.deps.extend(self._matching(dep, step))
                copies[index] = step
                self.steps.append(step)
            self._by_task[id(task)] = copies

    # -- lookups ----------------------------------------------------------------------
    def of_task(self, task: Task) -> list[Step]:
        """Every step of ``task`` (one per item of its expanded loops)."""
        return list(self._by_task[id(task)].values())

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def find(self, task: Task, index: tuple[int, ...]) -> Step:
        """The step of ``task`` at loop ``index``."""
        return self._by_task[id(task)][index]

    def loop_items(self, loop: ParallelFor) -> list[Any]:
        """The items a loop runs over: a literal list, or the value of a list parameter."""
        if isinstance(loop.items, PipelineParam):
            if self.values is None:
                raise PlanError(f"{loop.id}: ParallelFor over {loop.items.describe()} needs the "
                                "parameter's value to be expanded into steps")
            return list(self.values[loop.items.name])
        if isinstance(loop.items, Channel):
            raise PlanError(
                f"{loop.id}: ParallelFor over {loop.items.describe()} is not supported; loop "
                "over a list literal or a list pipeline parameter")
        return list(loop.items)

    def _matching(self, task: Task, consumer: Step) -> list[Step]:
        """The steps of upstream ``task`` that ``consumer`` waits for: the one at the same items
        of the loops they share, and every item of a loop the consumer is outside of."""
        copies = self._by_task[id(task)]
        if not copies:
            return []
        loops = next(iter(copies.values())).loops
        return [step for index, step in copies.items()
                if all(index[i] == consumer.index[consumer.loops.index(g)]
                       for i, g in enumerate(loops) if g in consumer.loops)]

    def producer(self, out: TaskOutput, consumer: Step | None) -> Step:
        """The step whose output ``out`` is, as seen from ``consumer`` (None: the pipeline)."""
        copies = self._by_task[id(out.task)]
        loops = next(iter(copies.values())).loops if copies else ()
        if consumer is not None and all(g in consumer.loops for g in loops):
            return copies[tuple(consumer.index[consumer.loops.index(g)] for g in loops)]
        if len(copies) != 1:
            raise PlanError(f"{out.describe()} has one value per loop item; read it inside the "
                            "same loop")
        return next(iter(copies.values()))

    # -- values -----------------------------------------------------------------------
    def item(self, step: Step, value: LoopItem) -> Any:
        """The loop item (or its field) that ``step`` runs for."""
        loop = next(g for g in step.loops if g.id == value.loop_id)
        item = self.loop_items(loop)[step.index[step.loops.index(loop)]]
        return item[value.field] if value.field else item

    def resolve(self, value: Any, step: Step | None,
                output: Callable[[Step, str], Any]) -> Any:
        """A run-time value: a parameter's value, a loop item, or ``output(producer, name)``."""
        if isinstance(value, PipelineParam):
            if self.values is None:
                raise PlanError(f"{value.describe()} has no value in this plan")
            return self.values[value.name]
        if isinstance(value, LoopItem):
            if step is None:
                raise PlanError(f"{value.describe()} is used outside its loop")
            return self.item(step, value)
        if isinstance(value, TaskOutput):
            return output(self.producer(value, step), value.output)
        return value
