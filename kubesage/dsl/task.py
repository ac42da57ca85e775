"""A task: one call of a component inside a pipeline, with its arguments and settings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kubesage.dsl.channel import Channel, TaskOutput
from kubesage.dsl.errors import DefinitionError
from kubesage.dsl.interface import ArtifactSpec, ComponentSpec, Distribution, Resources

if TYPE_CHECKING:
    from kubesage.dsl.control import Group


class TaskOutputs(Mapping[str, TaskOutput]):
    """``task.outputs["model"]`` or ``task.outputs.model``."""

    def __init__(self, task: Task) -> None:
        self._task = task

    def __getitem__(self, name: str) -> TaskOutput:
        spec = self._task.spec.output(name)
        if spec is None:
            raise DefinitionError(
                f"task '{self._task.name}' has no output '{name}'; its outputs are: "
                f"{', '.join(self._task.spec.output_names) or '(none)'}"
            )
        return TaskOutput(self._task, name, spec.type, isinstance(spec, ArtifactSpec))

    def __getattr__(self, name: str) -> TaskOutput:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._task.spec.output_names)

    def __len__(self) -> int:
        return len(self._task.spec.output_names)


class Task:
    """A node of the pipeline graph. Setters return the task, so settings chain."""

    def __init__(
        self, name: str, spec: ComponentSpec, arguments: dict[str, Any], groups: tuple[Group, ...]
    ) -> None:
        self.name = name
        self.spec = spec
        self.arguments = arguments
        self.groups = groups
        self.explicit_after: list[Task] = []
        self.retries = spec.retries
        self.cache = spec.cache
        self.resources = spec.resources
        self.distribution = spec.distribution

    @property
    def outputs(self) -> TaskOutputs:
        return TaskOutputs(self)

    @property
    def output(self) -> TaskOutput:
        """The returned value of the task, or its only output when it returns nothing."""
        if any(r.name == "output" for r in self.spec.returns):
            return self.outputs["output"]
        names = self.spec.output_names
        if len(names) != 1:
            raise DefinitionError(
                f"task '{self.name}' has {len(names)} outputs ({', '.join(names) or 'none'}); "
                "pick one with task.outputs['<name>']"
            )
        return self.outputs[names[0]]

    def upstream(self) -> list[Task]:
        """Tasks this one waits for: data dependencies, condition inputs and ``after``."""
        found: dict[int, Task] = {}
        values: list[Any] = list(self.arguments.values())
        for group in self.groups:
            values.extend(group.channels())
        for value in values:
            if isinstance(value, TaskOutput):
                found[id(value.task)] = value.task
        for task in self.explicit_after:
            found[id(task)] = task
        return list(found.values())

    def set_name(self, name: str) -> Task:
        self.name = name
        return self

    def after(self, *tasks: Task) -> Task:
        """Run after ``tasks`` even without a data dependency."""
        self.explicit_after.extend(tasks)
        return self

    def set_retries(self, retries: int) -> Task:
        self.retries = retries
        return self

    def set_caching(self, enabled: bool) -> Task:
        self.cache = enabled
        return self

    def set_resources(
        self, cpu: float | None = None, memory: str | None = None, gpus: int | None = None
    ) -> Task:
        current = self.resources
        self.resources = Resources(
            cpu=cpu if cpu is not None else current.cpu,
            memory=memory if memory is not None else current.memory,
            gpus=gpus if gpus is not None else current.gpus,
        )
        return self

    def set_distribution(self, nodes: int, procs_per_node: int = 1) -> Task:
        """Train data-parallel on ``nodes`` machines x ``procs_per_node`` processes."""
        self.distribution = Distribution(nodes, procs_per_node)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "component": self.spec.to_dict(),
            "arguments": {
                k: (v.to_dict() if isinstance(v, Channel) else {"value": v})
                for k, v in sorted(self.arguments.items())
            },
            "after": sorted(t.name for t in self.explicit_after),
            "groups": [g.id for g in self.groups],
            "retries": self.retries,
            "cache": self.cache,
            "resources": self.resources.to_dict(),
            "distribution": self.distribution.to_dict(),
        }

    def __repr__(self) -> str:
        return f"<task {self.name} ({self.spec.name})>"
