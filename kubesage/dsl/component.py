"""``@component``: declare a containerized step from a typed Python function.

Called outside a pipeline, a component is the plain function (unit-testable). Called while a
``@pipeline`` function is being built, it adds a task to that pipeline and returns it.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from kubesage.dsl.errors import DefinitionError
from kubesage.dsl.interface import (
    NO_DEFAULT,
    ArtifactSpec,
    ComponentSpec,
    Distribution,
    ParameterSpec,
    Resources,
    Serving,
)
from kubesage.dsl.types import INPUT, artifact_annotation, check_value, param_type_name

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_IMAGE = "kubesage/torch"


class Component(Generic[P, R]):
    """A component: its interface (``spec``) and the Python function that implements it."""

    def __init__(self, func: Callable[P, R], spec: ComponentSpec) -> None:
        self.python_func = func
        self.spec = spec
        functools.update_wrapper(self, func)

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        from kubesage.dsl.pipeline import current_builder

        builder = current_builder()
        if builder is None:
            return self.python_func(*args, **kwargs)
        if args:
            raise DefinitionError(
                f"component '{self.name}' was called with positional arguments inside a "
                "pipeline; pass every input by name, e.g. "
                f"{self.name}({', '.join(n + '=...' for n in self.spec.input_names[:2])})"
            )
        return builder.add_task(self, kwargs)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<component {self.spec.name}@{self.spec.version}>"


@overload
def component(func: Callable[P, R], /) -> Component[P, R]: ...


@overload
def component(
    *,
    name: str | None = ...,
    version: str = ...,
    image: str = ...,
    resources: Resources | None = ...,
    distribution: Distribution | None = ...,
    mounts: dict[str, str] | None = ...,
    retries: int = ...,
    cache: bool = ...,
    preload: list[str] | None = ...,
    serving: Serving | None = ...,
    fuse: bool = ...,
) -> Callable[[Callable[P, R]], Component[P, R]]: ...


def component(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    version: str = "0.1.0",
    image: str = DEFAULT_IMAGE,
    resources: Resources | None = None,
    distribution: Distribution | None = None,
    mounts: dict[str, str] | None = None,
    retries: int = 0,
    cache: bool = True,
    preload: list[str] | None = None,
    serving: Serving | None = None,
    fuse: bool = True,
) -> Any:
    """Declare a component from a typed function.

    Parameters are annotated ``str``, ``int``, ``float``, ``bool``, ``list`` or ``dict`` (with
    optional defaults); artifacts are ``Input[Dataset]``, ``Output[Model]`` and so on. A return
    annotation of a parameter type (or a ``NamedTuple`` of them) declares output parameters that
    conditions can test. ``mounts`` maps a data mount name (``"fsx"``) to its path inside the
    container (``"/fsx"``); where the data comes from is the target config's business.
    ``preload`` names heavy modules the function imports (``["torch"]``): the local Docker
    runner starts the step's container while its upstream steps still run and imports them
    there, so the step itself starts warm. ``serving`` marks a batch-inference component
    whose model the serving image answers alike (``Serving(handler=...)``): SageMaker compiles
    it to a model plus a batch transform job. ``fuse=False`` says the step must run alone: a
    cloud target never runs it in one job with other steps (``kubesage.plan.fusion``), for
    example because it needs an instance of its own.
    """

    def wrap(f: Callable[..., Any]) -> Component[Any, Any]:
        spec = _spec_from_function(
            f,
            name=name or f.__name__.replace("_", "-"),
            version=version,
            image=image,
            resources=resources or Resources(),
            distribution=distribution or Distribution(),
            mounts=mounts or {},
            retries=retries,
            cache=cache,
            preload=tuple(preload or ()),
            serving=serving,
            fuse=fuse,
        )
        return Component(f, spec)

    return wrap(func) if func is not None else wrap


def _spec_from_function(f: Callable[..., Any], **options: Any) -> ComponentSpec:
    where = f"component '{options['name']}' ({f.__module__}.{f.__qualname__})"
    hints = typing.get_type_hints(f, include_extras=True)
    parameters: list[ParameterSpec] = []
    inputs: list[ArtifactSpec] = []
    outputs: list[ArtifactSpec] = []
    for pname, param in inspect.signature(f).parameters.items():
        if pname not in hints:
            raise DefinitionError(f"{where}: argument '{pname}' has no type annotation; annotate it")
        annotation = hints[pname]
        art = artifact_annotation(annotation)
        if art is not None:
            direction, cls = art
            (inputs if direction is INPUT else outputs).append(ArtifactSpec(pname, cls.type_name))
            continue
        type_name = param_type_name(annotation)
        if type_name is None:
            raise DefinitionError(
                f"{where}: argument '{pname}' has type {annotation!r}; use str, int, float, bool, "
                "list, dict, Input[<Artifact>] or Output[<Artifact>]"
            )
        default = param.default if param.default is not inspect.Parameter.empty else NO_DEFAULT
        if default is not NO_DEFAULT and not check_value(type_name, default):
            raise DefinitionError(
                f"{where}: default {default!r} of '{pname}' is not a {type_name}; fix the default"
            )
        if type_name == "secret" and default not in (NO_DEFAULT, None, ""):
            raise DefinitionError(f"{where}: secret '{pname}' has a default in code; a secret "
                                  "never lives in code: drop the default, pass it at run time")
        parameters.append(ParameterSpec(pname, type_name, default))
    returns = _return_specs(hints.get("return", None), where)
    return ComponentSpec(
        name=options["name"],
        version=options["version"],
        entry=f"{f.__module__}:{f.__qualname__}",
        image=options["image"],
        description=inspect.getdoc(f) or "",
        parameters=tuple(parameters),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        returns=returns,
        resources=options["resources"],
        distribution=options["distribution"],
        mounts=tuple(sorted(options["mounts"].items())),
        retries=options["retries"],
        cache=options["cache"],
        preload=options["preload"],
        serving=options["serving"],
        fuse=options["fuse"],
    )


def _return_specs(annotation: Any, where: str) -> tuple[ParameterSpec, ...]:
    if annotation is None or annotation is type(None):
        return ()
    if isinstance(annotation, type) and issubclass(annotation, tuple) and hasattr(
        annotation, "_fields"
    ):
        fields = typing.get_type_hints(annotation)
        specs = []
        for fname, ftype in fields.items():
            type_name = param_type_name(ftype)
            if type_name is None:
                raise DefinitionError(f"{where}: return field '{fname}' must be a parameter type")
            specs.append(ParameterSpec(fname, type_name))
        return tuple(specs)
    type_name = param_type_name(annotation)
    if type_name is None:
        raise DefinitionError(
            f"{where}: return type {annotation!r} is not a parameter type; return a str, int, "
            "float, bool, list, dict or a NamedTuple of them, and write artifacts to Output[...]"
        )
    return (ParameterSpec("output", type_name),)
