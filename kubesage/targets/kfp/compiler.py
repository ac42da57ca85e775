"""Compile a neutral pipeline to Kubeflow Pipelines v2 IR YAML with the kfp SDK's own compiler.

The neutral graph is replayed inside a kfp ``@dsl.pipeline`` function: one container component
per task (or per group of tasks that share one pod, ``fused``; ``kubesage.plan.fusion``),
``dsl.If`` for conditions, ``dsl.ParallelFor`` for fan-out, kfp-kubernetes for the platform
settings. The kfp compiler writes the IR; nothing here writes IR by hand. Compiling the
same pipeline with the same config twice gives byte-identical YAML.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
from typing import Any

from kfp import compiler, dsl

from kubesage.dsl.channel import Channel, Comparison, LoopItem, PipelineParam, TaskOutput
from kubesage.dsl.control import Condition, Group, ParallelFor
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.dsl.task import Task
from kubesage.runtime.kfp import kfp_output_name
from kubesage.targets.kfp import platform
from kubesage.targets.kfp.components import PARAM_TYPES, container_component
from kubesage.targets.kfp.config import KfpConfig
from kubesage.targets.kfp.fused import (
    FusedTask,
    condition_reads,
    fused_component,
    fused_task,
    platform_task,
)


class KfpCompileError(KubesageError):
    """The kfp SDK refused the pipeline (a construct Kubeflow cannot express)."""


def _pipeline_signature(pipeline: Pipeline) -> inspect.Signature:
    P = inspect.Parameter
    params = sorted(pipeline.parameters, key=lambda p: not p.required)
    return inspect.Signature([
        P(p.name, P.POSITIONAL_OR_KEYWORD, annotation=PARAM_TYPES[p.type],
          **({} if p.required else {"default": p.default}))
        for p in params
    ])


class _Replay:
    """Rebuilds the neutral graph with kfp objects, inside the kfp pipeline function."""

    def __init__(self, pipeline: Pipeline, config: KfpConfig, channels: dict[str, Any],
                 fused: list[FusedTask] | None = None) -> None:
        self.pipeline = pipeline
        self.config = config
        self.params = channels
        self.tasks: dict[str, Any] = {}
        self.loops: dict[str, Any] = {}
        self.fused = {id(t): f for f in fused or [] for t in f.members}  # member -> its group

    def value(self, value: Any) -> Any:
        if isinstance(value, PipelineParam):
            return self.params[value.name]
        if isinstance(value, TaskOutput) and id(value.task) in self.fused:
            group = self.fused[id(value.task)]
            return self.tasks[group.name].outputs[group.output_name(value.task.name, value.output)]
        if isinstance(value, TaskOutput):
            return self.tasks[value.task.name].outputs[kfp_output_name(value.output)]
        if isinstance(value, LoopItem):
            item = self.loops[value.loop_id]
            return getattr(item, value.field) if value.field else item
        if isinstance(value, Channel):
            raise KfpCompileError(f"{value.describe()} cannot be compiled for Kubeflow")
        return value

    def open_group(self, group: Group) -> contextlib.AbstractContextManager[Any]:
        if isinstance(group, Condition):
            return dsl.If(self.condition(group.comparison), name=group.name or group.id)
        if isinstance(group, ParallelFor):
            return _Loop(self, group)
        raise KfpCompileError(f"group {group.id} ({type(group).__name__}) has no Kubeflow form")

    def condition(self, cmp: Comparison) -> Any:
        left, right = self.value(cmp.left), self.value(cmp.right)
        ops = {"==": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__",
               ">=": "__ge__"}
        return getattr(left, ops[cmp.op])(right)

    def build(self) -> None:
        open_groups: list[Group] = []
        stack = contextlib.ExitStack()
        contexts: list[contextlib.ExitStack] = []
        with stack:
            for task in self._units():
                wanted = list(task.groups)
                common = 0
                while (common < len(open_groups) and common < len(wanted)
                       and open_groups[common] is wanted[common]):
                    common += 1
                while len(open_groups) > common:
                    open_groups.pop()
                    contexts.pop().close()
                for group in wanted[common:]:
                    ctx = contextlib.ExitStack()
                    ctx.enter_context(self.open_group(group))
                    open_groups.append(group)
                    contexts.append(ctx)
                if isinstance(task, FusedTask):
                    self.add_fused(task)
                else:
                    self.add_task(task)
            while contexts:
                contexts.pop().close()
        for task in self.pipeline.tasks:
            for dep in task.explicit_after:
                mine, theirs = self._unit_name(task), self._unit_name(dep)
                if mine != theirs:
                    self.tasks[mine].after(self.tasks[theirs])

    def _unit_name(self, task: Task) -> str:
        group = self.fused.get(id(task))
        return group.name if group is not None else task.name

    def _units(self) -> list[Task | FusedTask]:
        """Tasks and fused groups in build order: the pipeline's, a group where its first
        member is, moved after anything it reads (a stable topological order)."""
        units: list[Task | FusedTask] = []
        for task in self.pipeline.tasks:
            group = self.fused.get(id(task))
            if group is None:
                units.append(task)
            elif group.members[0] is task:
                units.append(group)
        if not self.fused:
            return units
        order: list[Task | FusedTask] = []
        placed: set[str] = set()
        while len(order) < len(units):
            for unit in units:
                name = unit.name
                members = unit.members if isinstance(unit, FusedTask) else [unit]
                needs = {self._unit_name(t) for m in members for t in m.upstream()} - {name}
                if name not in placed and needs <= placed:
                    order.append(unit)
                    placed.add(name)
                    break
            else:
                raise KfpCompileError("fused tasks wait for each other in a cycle; set fusion: off")
        return order

    def add_fused(self, group: FusedTask) -> None:
        component = fused_component(group, self.config)
        arguments = {name: self.value(v) for name, v in group.arguments.items()}
        kfp_task = component(**arguments)
        platform.apply(kfp_task, platform_task(group), self.config)
        self.tasks[group.name] = kfp_task

    def add_task(self, task: Any) -> None:
        component = container_component(task.name, task.spec, task.resources, task.distribution,
                                        self.config)
        arguments = {name: self.value(v) for name, v in task.arguments.items()}
        kfp_task = component(**arguments)
        platform.apply(kfp_task, task, self.config)
        self.tasks[task.name] = kfp_task


class _Loop:
    """``dsl.ParallelFor`` whose loop variable the replay resolves ``LoopItem`` channels to."""

    def __init__(self, replay: _Replay, group: ParallelFor) -> None:
        self.replay = replay
        self.group = group
        items = replay.value(group.items)
        self.loop = dsl.ParallelFor(items, parallelism=group.parallelism or 0)

    def __enter__(self) -> Any:
        item = self.loop.__enter__()
        self.replay.loops[self.group.id] = item
        return item

    def __exit__(self, *exc: Any) -> Any:
        return self.loop.__exit__(*exc)


def fused_tasks(pipeline: Pipeline, config: KfpConfig) -> list[FusedTask]:
    """The groups of tasks that share one pod (``config.fusion``)."""
    from kubesage.targets.kfp.fusion import fusion_plan

    _, plan = fusion_plan(pipeline, config.fusion)
    reads = condition_reads(pipeline.groups)
    return [fused_task([s.task for s in g.members], reads) for g in plan.fused]


def kfp_pipeline(pipeline: Pipeline, config: KfpConfig) -> Any:
    """The kfp ``GraphComponent`` equivalent of ``pipeline``."""
    fused = fused_tasks(pipeline, config)

    def body(*args: Any) -> None:
        names = [p.name for p in sorted(pipeline.parameters, key=lambda p: not p.required)]
        _Replay(pipeline, config, dict(zip(names, args, strict=True)), fused).build()

    body.__signature__ = _pipeline_signature(pipeline)  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = pipeline.name.replace("-", "_")
    body.__doc__ = pipeline.description
    try:
        return dsl.pipeline(name=pipeline.name, description=pipeline.description or None)(body)
    except KubesageError:
        raise
    except Exception as e:  # the kfp SDK raises ValueError/TypeError/RuntimeError for bad graphs
        raise KfpCompileError(
            f"pipeline '{pipeline.name}' cannot be compiled for Kubeflow: {e}") from None


def compile_to_file(pipeline: Pipeline, output: str, config: KfpConfig) -> str:
    """Compile and write ``output`` atomically (temporary file, then rename)."""
    return write_compiled(kfp_pipeline(pipeline, config), output, f"pipeline '{pipeline.name}'")


def write_compiled(graph: Any, output: str, what: str) -> str:
    """Compile a kfp pipeline or component with kfp's compiler into ``output``, atomically."""
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kubesage-", suffix=".yaml", dir=folder)
    os.close(fd)
    try:
        compiler.Compiler().compile(graph, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except Exception as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, KubesageError):
            raise
        raise KfpCompileError(f"kfp could not compile {what}: {e}") from None
    return output
