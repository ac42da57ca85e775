"""A group of tasks (``kubesage.plan.fusion``) as one kfp container component.

The fused component's interface is its members' interfaces, each name prefixed by its task
(``train__epochs``, ``train__model``): the parameters the members are given, the artifacts they
read from outside the group, and every member's outputs and returned values, so that what is
read outside the group stays a KFP artifact or parameter (and every member's metrics and
artifacts reach KFP's UI as before). It runs ``python -m kubesage.runtime kfp --group LAYOUT``:
the members in order in one pod, an artifact a member makes for a later one read from local
disk, a value it returns passed on directly. The task is named ``<first>-to-<last>``.

A returned value a condition reads is the fused task's ``Output``, kfp's name for a task's value
(kfp.local's conditions resolve no other name); ``KfpFusion.fits`` keeps it to one per group.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from kfp import dsl

from kubesage.dsl.channel import TaskOutput
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.interface import ComponentSpec, Distribution, Resources
from kubesage.dsl.task import Task
from kubesage.runtime import COMMAND
from kubesage.targets.kfp.components import ARTIFACT_TYPES, PARAM_TYPES, container_args
from kubesage.targets.kfp.config import KfpConfig

SEPARATOR = "__"


def prefixed(task: str, name: str) -> str:
    """The fused component's name for ``name`` of member ``task``: a Python identifier."""
    return re.sub(r"\W", "_", task) + SEPARATOR + name


@dataclass(eq=False)
class FusedTask:
    """One container task running ``members`` (tasks, in order)."""

    name: str
    members: list[Task]
    layout: list[dict[str, Any]] = field(default_factory=list)
    arguments: dict[str, Any] = field(default_factory=dict)  # fused input -> neutral value
    parameters: dict[str, str] = field(default_factory=dict)  # fused input -> parameter type
    inputs: dict[str, str] = field(default_factory=dict)  # fused input -> artifact type
    outputs: dict[str, str] = field(default_factory=dict)  # fused output -> artifact type
    returns: dict[str, str] = field(default_factory=dict)  # fused output -> parameter type
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (task, output) -> fused

    def output_name(self, task: str, output: str) -> str:
        """The fused task's name of member ``task``'s output or returned value ``output``."""
        return self.names[(task, output)]

    @property
    def groups(self) -> tuple[Any, ...]:
        return self.members[0].groups

    def has(self, task: Task) -> bool:
        return any(m is task for m in self.members)


def condition_reads(pipeline_groups: tuple[Any, ...] | list[Any]) -> set[tuple[int, str]]:
    """(id of a task, returned value) that a ``Condition`` reads."""
    from kubesage.dsl.control import Condition

    return {(id(v.task), v.output) for g in pipeline_groups if isinstance(g, Condition)
            for v in g.channels() if isinstance(v, TaskOutput) and not v.is_artifact}


def fused_task(members: list[Task], conditions: set[tuple[int, str]] | None = None) -> FusedTask:
    """The interface and layout of a group of tasks (``conditions``: what conditions read)."""
    fused = FusedTask(f"{members[0].name}-to-{members[-1].name}", members)
    for task in members:
        spec = task.spec
        entry: dict[str, Any] = {"name": task.name, "entry": spec.entry, "params": {},
                                 "param_from": {}, "inputs": {}, "local": {}, "outputs": {},
                                 "returns": {}}
        for arg, value in sorted(task.arguments.items()):
            inside = isinstance(value, TaskOutput) and fused.has(value.task)
            artifact = spec.input(arg)
            if inside:
                key = "local" if artifact is not None else "param_from"
                entry[key][arg] = [value.task.name, value.output]
                continue
            name = prefixed(task.name, arg)
            fused.arguments[name] = value
            if artifact is not None:
                fused.inputs[name] = artifact.type
                entry["inputs"][arg] = name
            else:
                param = spec.parameter(arg)
                assert param is not None
                fused.parameters[name] = param.type
                entry["params"][arg] = name
        for a in spec.outputs:
            fused.outputs[prefixed(task.name, a.name)] = a.type
            entry["outputs"][a.name] = prefixed(task.name, a.name)
        for r in spec.returns:
            name = "Output" if (id(task), r.name) in (conditions or set()) else \
                prefixed(task.name, r.name)
            fused.returns[name] = r.type
            entry["returns"][r.name] = name
        fused.layout.append(entry)
        fused.names.update({(task.name, o): n for key in ("outputs", "returns")
                            for o, n in entry[key].items()})
    names = [*fused.arguments, *fused.outputs, *fused.returns]
    if len(set(names)) != len(names):
        raise KubesageError(f"tasks {', '.join(t.name for t in members)} have names that read "
                            "alike as Python identifiers; rename one, or set fusion: off")
    return fused


def platform_task(fused: FusedTask) -> Task:
    """A neutral task standing for the group, for the per-task Kubernetes settings: the largest
    resources of its members, every data mount, their caching."""
    members = fused.members
    cpus = [t.resources.cpu for t in members if t.resources.cpu]
    memories = [t.resources.memory for t in members if t.resources.memory]
    gpus = max(t.resources.node_gpus(t.distribution.procs_per_node) for t in members)
    mounts = tuple(sorted({m for t in members for m in t.spec.mounts}))
    spec = ComponentSpec(name=fused.name, version="", entry="", image=members[0].spec.image,
                         mounts=mounts)
    task = Task(fused.name, spec, {}, fused.groups)
    task.cache = members[0].cache
    task.resources = Resources(cpu=max(cpus) if cpus else None,
                               memory=max(memories, key=_bytes) if memories else None, gpus=gpus)
    task.distribution = Distribution()
    return task


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20,
          "Gi": 2**30, "Ti": 2**40, "m": 10**-3}


def _bytes(quantity: str) -> float:
    match = re.match(r"^([0-9.]+)([A-Za-z]*)$", quantity)
    return float(match[1]) * _UNITS.get(match[2], 1) if match else 0.0


def fused_component(fused: FusedTask, config: KfpConfig) -> Any:
    """The kfp ``ContainerComponent`` of a group."""
    P = inspect.Parameter
    params = [P(n, P.POSITIONAL_OR_KEYWORD, annotation=PARAM_TYPES[t])
              for n, t in fused.parameters.items()]
    params += [P(n, P.POSITIONAL_OR_KEYWORD, annotation=dsl.Input[ARTIFACT_TYPES[t]])
               for n, t in fused.inputs.items()]
    params += [P(n, P.POSITIONAL_OR_KEYWORD, annotation=dsl.Output[ARTIFACT_TYPES[t]])
               for n, t in fused.outputs.items()]
    params += [P(_identifier(n), P.POSITIONAL_OR_KEYWORD,
                 annotation=dsl.OutputPath(PARAM_TYPES[t])) for n, t in fused.returns.items()]
    first = fused.members[0].spec
    image = config.image(first.image)
    args = container_args(first, Resources(), Distribution(), config)
    args[1:3] = ["--group", json.dumps(fused.layout, sort_keys=True, separators=(",", ":"))]

    def body(*_: Any) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(image=image, command=list(COMMAND), args=list(args))

    body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = fused.name
    body.__doc__ = "kubesage fused task: " + ", then ".join(
        f"{t.name} ({t.spec.name}@{t.spec.version})" for t in fused.members)
    component = dsl.container_component(body)
    # "Output" is no name kfp takes for an argument: named otherwise, renamed afterwards
    outputs = component.component_spec.outputs or {}
    component.component_spec.outputs = {("Output" if k == _identifier("Output") else k): v
                                        for k, v in outputs.items()} or None
    return component


def _identifier(name: str) -> str:
    return "kubesage_output" if name == "Output" else name


def compiled_members(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Fused task name -> its members, in a compiled pipeline's PipelineSpec (``doc``): read
    from each fused executor's ``--group`` layout (a submitted run's record lists members)."""
    executors = doc.get("deploymentSpec", {}).get("executors", {})
    components = doc.get("components", {})
    found: dict[str, list[str]] = {}

    def walk(dag: dict[str, Any]) -> None:
        for task_name, task in dag.get("tasks", {}).items():
            component = components.get(task.get("componentRef", {}).get("name", ""), {})
            if "dag" in component:
                walk(component["dag"])
                continue
            args = executors.get(component.get("executorLabel", ""), {}).get(
                "container", {}).get("args", [])
            if "--group" in args[:-1]:
                layout = json.loads(args[args.index("--group") + 1])
                found[task_name] = [m["name"] for m in layout]

    walk(doc.get("root", {}).get("dag", {}))
    return found
