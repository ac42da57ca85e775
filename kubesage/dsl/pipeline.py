"""``@pipeline``: compose component calls into a neutral pipeline graph.

Building a pipeline calls its function once with channels in place of the parameters; every
component call inside adds a task. Mistakes are reported right there, naming the task and input.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import hashlib
import inspect
import json
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesage.dsl.channel import Channel, LoopItem, PipelineArtifact, PipelineParam, TaskOutput
from kubesage.dsl.control import Group
from kubesage.dsl.errors import (
    DefinitionError,
    MissingInputError,
    ParameterError,
    TypeMismatchError,
    UnknownInputError,
)
from kubesage.dsl.interface import NO_DEFAULT, ArtifactSpec, ParameterSpec
from kubesage.dsl.task import Task
from kubesage.dsl.types import PARAM_TYPES, check_value, coerce, compatible, param_type_name, parse_value

if typing.TYPE_CHECKING:
    from kubesage.dsl.component import Component

_BUILDER: contextvars.ContextVar[_Builder | None] = contextvars.ContextVar(
    "kubesage_builder", default=None
)


def current_builder() -> _Builder | None:
    """The pipeline being built in this context, if any."""
    return _BUILDER.get()


def require_builder(what: str) -> _Builder:
    builder = _BUILDER.get()
    if builder is None:
        raise DefinitionError(f"{what} can only be used inside a @pipeline function")
    return builder


@dataclass
class Pipeline:
    """A built, validated pipeline graph: parameters, tasks in definition order, groups."""

    name: str
    description: str
    parameters: list[ParameterSpec]
    tasks: list[Task]
    groups: list[Group] = field(default_factory=list)
    artifacts: list[ArtifactSpec] = field(default_factory=list)  # input artifacts from outside

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The neutral graph as one JSON document (what every target compiles from)."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": [p.to_dict() for p in self.parameters],
            "groups": [g.to_dict() for g in self.groups],
            "tasks": [t.to_dict() for t in self.tasks],
            **({"artifacts": [a.to_dict() for a in self.artifacts]} if self.artifacts else {}),
        }

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def resolve_parameters(self, given: dict[str, Any]) -> dict[str, Any]:
        """Merge ``given`` (values or command-line strings) with defaults, checking types."""
        typed = typed_values(self.name, {p.name: p.type for p in self.parameters}, given)
        values: dict[str, Any] = {}
        for p in self.parameters:
            if p.name in typed:
                values[p.name] = typed[p.name]
            elif p.type == "secret" and os.environ.get(secret_env(p.name)):
                values[p.name] = os.environ[secret_env(p.name)]
            elif p.required:
                also = f" or set {secret_env(p.name)}" if p.type == "secret" else ""
                raise ParameterError(
                    f"pipeline parameter '{p.name}' ({p.type}) has no default; "
                    f"pass --param {p.name}={_example(p.type)}{also}"
                )
            else:
                values[p.name] = p.default
        return values


def typed_values(pipeline: str, declared: dict[str, str], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (values, or command-line strings) checked against ``declared`` (parameter name
    -> a type of ``kubesage.dsl.types``' table), each in its type: the one check of parameter
    values, for a pipeline here and for a compiled file (each target reads its file's declared
    types into the table's names)."""
    for name in given:
        if name not in declared:
            raise ParameterError(
                f"pipeline '{pipeline}' has no parameter '{name}'"
                f"{_did_you_mean(name, declared)}; its parameters are: "
                f"{', '.join(declared) or '(none)'}"
            )
    values: dict[str, Any] = {}
    for name, value in given.items():
        kind = declared[name]
        if isinstance(value, str) and kind not in ("str", "secret"):
            try:
                value = parse_value(kind, value)
            except ValueError as e:
                raise ParameterError(
                    f"pipeline parameter '{name}' expects a {kind}: {e}; "
                    f"pass e.g. --param {name}={_example(kind)}"
                ) from None
        if not check_value(kind, value):
            raise ParameterError(f"pipeline parameter '{name}' expects a {kind}, got {value!r}")
        values[name] = coerce(kind, value)
    return values


def secret_env(name: str) -> str:
    """The environment variable a secret parameter's value may come from."""
    return "KUBESAGE_SECRET_" + name.upper()


def _example(type_name: str) -> str:
    return PARAM_TYPES[type_name].example


def _did_you_mean(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Builder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks: list[Task] = []
        self.groups: list[Group] = []
        self.stack: list[Group] = []
        self.counts: dict[str, int] = {}

    def enter_group(self, group: Group) -> None:
        self.counts[group.kind] = self.counts.get(group.kind, 0) + 1
        group.id = f"{group.kind}-{self.counts[group.kind]}"
        for channel in group.channels():
            self._check_scope(channel, f"{type(group).__name__} '{group.id}'")
        self.groups.append(group)
        self.stack.append(group)

    def exit_group(self, group: Group) -> None:
        assert self.stack and self.stack[-1] is group
        self.stack.pop()

    def add_task(self, comp: Component[Any, Any], arguments: dict[str, Any]) -> Task:
        spec = comp.spec
        base = spec.name
        self.counts["task:" + base] = self.counts.get("task:" + base, 0) + 1
        n = self.counts["task:" + base]
        name = base if n == 1 else f"{base}-{n}"
        task = Task(name, spec, dict(arguments), tuple(self.stack))
        where = f"task '{name}' (component '{spec.name}')"
        for arg, value in arguments.items():
            self._check_argument(task, where, arg, value)
        for p in spec.parameters:
            if p.required and p.name not in arguments:
                raise MissingInputError(
                    f"{where}: required input '{p.name}' ({p.type}) is missing; pass "
                    f"{p.name}=<{p.type}> or give it a default in the component"
                )
        for a in spec.inputs:
            if a.name not in arguments:
                raise MissingInputError(
                    f"{where}: input artifact '{a.name}' ({a.type}) is missing; connect an "
                    f"upstream output, e.g. {a.name}=<task>.outputs['{a.name}']"
                )
        self.tasks.append(task)
        return task

    def _check_argument(self, task: Task, where: str, arg: str, value: Any) -> None:
        spec = task.spec
        if spec.output(arg) is not None and spec.input(arg) is None and spec.parameter(arg) is None:
            raise UnknownInputError(
                f"{where}: '{arg}' is an output; kubesage creates output artifacts, so drop "
                f"{arg}=... from the call and use {task.name}.outputs['{arg}'] downstream"
            )
        param = spec.parameter(arg)
        art = spec.input(arg)
        if param is None and art is None:
            raise UnknownInputError(
                f"{where}: unknown input '{arg}'{_did_you_mean(arg, spec.input_names)}; its "
                f"inputs are: {', '.join(spec.input_names) or '(none)'}"
            )
        if isinstance(value, Channel):
            self._check_scope(value, f"{where}, input '{arg}'")
        if param is not None:
            if isinstance(value, Channel):
                if value.is_artifact:
                    raise TypeMismatchError(
                        f"{where}: input '{arg}' is a {param.type} parameter but gets "
                        f"{value.describe()}, a {value.type} artifact; connect a {param.type} "
                        "output or a pipeline parameter"
                    )
                if not isinstance(value, LoopItem) and not compatible(value.type, param.type):
                    raise TypeMismatchError(
                        f"{where}: input '{arg}' expects a {param.type} but gets "
                        f"{value.describe()}, a {value.type}; change one of the two types"
                    )
            elif not check_value(param.type, value):
                raise TypeMismatchError(
                    f"{where}: input '{arg}' expects a {param.type}, got {value!r} "
                    f"({type(value).__name__}); pass a {param.type}"
                )
            return
        assert art is not None
        if not isinstance(value, TaskOutput) or not value.is_artifact:
            shown = value.describe() if isinstance(value, Channel) else repr(value)
            raise TypeMismatchError(
                f"{where}: input '{arg}' is a {art.type} artifact but gets {shown}; connect an "
                f"upstream artifact output, e.g. {arg}=<task>.outputs['<name>']"
            )
        if art.type != "Artifact" and value.type != art.type:
            raise TypeMismatchError(
                f"{where}: input '{arg}' expects a {art.type} artifact but gets "
                f"{value.describe()}, a {value.type}; connect a {art.type} output instead"
            )

    def _check_scope(self, channel: Channel, where: str) -> None:
        if isinstance(channel, LoopItem) and not any(g.id == channel.loop_id for g in self.stack):
            raise DefinitionError(
                f"{where}: uses the item of {channel.loop_id} outside that ParallelFor; "
                "move the call inside the 'with ParallelFor(...)' block"
            )
        if isinstance(channel, TaskOutput):
            missing = [g for g in channel.task.groups if g not in self.stack]
            if missing:
                kind = "ParallelFor" if missing[0].kind == "loop" else "Condition"
                raise DefinitionError(
                    f"{where}: uses {channel.describe()}, which runs inside {kind} "
                    f"'{missing[0].id}'; move this call inside the same block"
                )


class PipelineDefinition:
    """A ``@pipeline`` function: call ``build()`` for the validated graph."""

    def __init__(self, func: Callable[..., Any], name: str, description: str) -> None:
        self.func = func
        self.name = name
        self.description = description
        functools.update_wrapper(self, func)
        self._built: Pipeline | None = None

    def parameters(self) -> list[ParameterSpec]:
        hints = typing.get_type_hints(self.func)
        specs = []
        for pname, param in inspect.signature(self.func).parameters.items():
            type_name = param_type_name(hints.get(pname))
            if type_name is None:
                raise DefinitionError(
                    f"pipeline '{self.name}': parameter '{pname}' needs a type annotation "
                    "(str, int, float, bool, list or dict)"
                )
            default = NO_DEFAULT if param.default is inspect.Parameter.empty else param.default
            if default is not NO_DEFAULT and not check_value(type_name, default):
                raise DefinitionError(
                    f"pipeline '{self.name}': default {default!r} of parameter '{pname}' is not "
                    f"a {type_name}"
                )
            if type_name == "secret" and default not in (NO_DEFAULT, None, ""):
                raise DefinitionError(
                    f"pipeline '{self.name}': secret '{pname}' has a default in code; a secret "
                    "never lives in code: drop the default, pass it at run time")
            specs.append(ParameterSpec(pname, type_name, default))
        return specs

    def build(self) -> Pipeline:
        """Run the pipeline function once, collecting and validating its tasks."""
        if self._built is not None:
            return self._built
        from kubesage.dsl.validate import validate

        params = self.parameters()
        builder = _Builder(self.name)
        token = _BUILDER.set(builder)
        try:
            self.func(**{p.name: PipelineParam(p.name, p.type) for p in params})
        except DefinitionError:
            raise
        except Exception as e:  # the pipeline function's own mistake: where, in one line
            import traceback

            frames = traceback.extract_tb(e.__traceback__)
            at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            raise DefinitionError(f"pipeline '{self.name}': building it raised "
                                  f"{type(e).__name__}: {e}{at}; fix the pipeline function") from None
        finally:
            _BUILDER.reset(token)
        pipeline = Pipeline(self.name, self.description, params, builder.tasks, builder.groups)
        validate(pipeline)
        self._built = pipeline
        return pipeline

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise DefinitionError(
            f"pipeline '{self.name}' is not called directly; run it with "
            f"'kubesage run <file>' or build the graph with {self.func.__name__}.build()"
        )


def pipeline(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str = ""
) -> Any:
    """Declare a pipeline from a function whose typed parameters are the pipeline parameters."""

    def wrap(f: Callable[..., Any]) -> PipelineDefinition:
        return PipelineDefinition(
            f, name or f.__name__.replace("_", "-"), description or inspect.getdoc(f) or ""
        )

    return wrap(func) if func is not None else wrap


class ComponentRun:
    """One component run on its own (``kubesage run FILE.py:component``): a pipeline of one
    task whose parameters are the component's and whose input artifacts come from outside."""

    def __init__(self, component: Component[Any, Any]) -> None:
        self.component = component
        self.name = component.spec.name

    def build(self) -> Pipeline:
        from kubesage.dsl.validate import validate

        spec = self.component.spec
        arguments: dict[str, Any] = {p.name: PipelineParam(p.name, p.type) for p in spec.parameters}
        arguments.update({a.name: PipelineArtifact(a.name, a.type) for a in spec.inputs})
        task = Task(spec.name, spec, arguments, ())
        pipeline = Pipeline(spec.name, spec.description, list(spec.parameters), [task],
                            artifacts=list(spec.inputs))
        validate(pipeline)
        return pipeline
