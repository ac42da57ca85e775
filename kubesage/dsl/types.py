"""Parameter and artifact types of the neutral model.

Parameters are plain JSON values (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``).
Artifacts are directories that a step reads (``Input[Dataset]``) or fills (``Output[Model]``);
every target maps them onto its own storage (a local folder, an S3 prefix, a KFP artifact URI).
"""

from __future__ import annotations

import json
import os
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar


@dataclass(frozen=True)
class ParamType:
    """One parameter type, with every conversion kubesage applies to its values.

    The one table of parameter types: definitions check defaults with it, the CLI and the
    runtimes parse text with it, the runner and the contracts coerce values with it, and command
    lines, hyperparameters and SageMaker parameters carry its text form. Targets declare their own
    type names against these names once (``kfp.components``, ``sagemaker.parameters``).
    """

    name: str
    python: type
    example: str  # a command-line value, for error messages
    annotation: type | None = None  # what a function annotates it with, when not ``python``
    secret: bool = False  # its values are never written down (records, logs, MLflow, files)

    def check(self, value: Any) -> bool:
        """Whether ``value`` is a valid literal of this type (an int is a valid float)."""
        if self.python is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.python is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, self.python)

    def coerce(self, value: Any) -> Any:
        """The value in this type's own Python type: ``3`` for a float is ``3.0``; ``16.0`` for
        an int (JSON numbers arrive as doubles through protobuf) is ``16``."""
        if self.python is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.python is int and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def parse(self, text: str) -> Any:
        """A value from its text form (command lines, hyperparameters); ValueError if not one."""
        if self.python is str:
            return text
        if self.python is int:
            return int(text)
        if self.python is float:
            return float(text)
        if self.python is bool:
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(f"{text!r} is not a boolean (use true or false)")
        value = json.loads(text)
        if not self.check(value):
            raise ValueError(f"{text!r} is not a JSON {self.name}")
        return value


class Secret(str):
    """A parameter that carries a secret (a token, a password): ``token: Secret``.

    The step gets the value; run records, MLflow, webhooks and kubesage's logs show ``***``, a
    step's task file is removed when it ends, and a secret has no default in code: pass it at
    run time (``--param token=...``, or ``$KUBESAGE_SECRET_TOKEN``).
    """


MASK = "***"

PARAM_TYPES: dict[str, ParamType] = {t.name: t for t in (
    ParamType("str", str, "text"),
    ParamType("int", int, "3"),
    ParamType("float", float, "0.5"),
    ParamType("bool", bool, "true"),
    ParamType("list", list, '["a","b"]'),
    ParamType("dict", dict, '{"k":1}'),
    ParamType("secret", str, "$TOKEN", annotation=Secret, secret=True),
)}


def masked(values: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    """``values`` with the value of every secret parameter (by ``types``) shown as ``***``."""
    return {k: (MASK if v is not None and PARAM_TYPES.get(types.get(k, ""), PARAM_TYPES["str"]).secret
                else v) for k, v in values.items()}


def text_form(value: Any) -> str:
    """A value as text, the same everywhere (command lines, hyperparameters, SageMaker
    parameters and ``Std:Join``): a string as it is, anything else as JSON (``true``, ``3``,
    ``0.5``, ``["a"]``)."""
    return value if isinstance(value, str) else json.dumps(value)


class Artifact:
    """A directory of files produced by one step and consumed by others.

    ``path`` is the local directory the component reads or writes; ``metadata`` is a small JSON
    dictionary that travels with the artifact (the run record keeps it).
    """

    type_name: ClassVar[str] = "Artifact"

    def __init__(self, path: str = "", metadata: dict[str, Any] | None = None) -> None:
        self.path = path
        self.metadata: dict[str, Any] = dict(metadata or {})

    def file(self, name: str) -> str:
        """Return the path of ``name`` inside the artifact directory."""
        return os.path.join(self.path, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"


class Dataset(Artifact):
    """Data written by one step for another (shards, splits, manifests)."""

    type_name = "Dataset"


class Model(Artifact):
    """A trained model and what is needed to use it."""

    type_name = "Model"


class Metrics(Artifact):
    """Scalar metrics of a step; every target shows them (run record, KFP UI, SageMaker)."""

    type_name = "Metrics"
    FILE: ClassVar[str] = "metrics.json"
    SERIES_FILE: ClassVar[str] = "series.json"

    def __init__(self, path: str = "", metadata: dict[str, Any] | None = None) -> None:
        super().__init__(path, metadata)
        self.series: dict[str, list[tuple[int, float]]] = {}

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record a scalar metric. With ``step`` (an epoch, say) it is also kept as a series
        (learning curves); the last value is the metric's final value."""
        self.metadata[name] = float(value)
        if step is not None:
            self.series.setdefault(name, []).append((int(step), float(value)))

    def save(self) -> None:
        """Write the metrics (``metrics.json``) and series (``series.json``) logged so far."""
        if self.path:
            os.makedirs(self.path, exist_ok=True)
            with open(self.file(self.FILE), "w") as f:
                json.dump(self.metadata, f, indent=2, sort_keys=True)
            if self.series:
                with open(self.file(self.SERIES_FILE), "w") as f:
                    json.dump(self.series, f, sort_keys=True)


ARTIFACT_TYPES: dict[str, type[Artifact]] = {
    cls.type_name: cls for cls in (Artifact, Dataset, Model, Metrics)
}

T = TypeVar("T", bound=Artifact)


class _Direction:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


INPUT = _Direction("input")
OUTPUT = _Direction("output")


if typing.TYPE_CHECKING:  # to a type checker, Output[Model] is a Model (as in kfp.dsl)
    Input = typing.Annotated[T, "input"]
    Output = typing.Annotated[T, "output"]
else:
    class Input(Generic[T]):
        """``Input[Dataset]``: an artifact the component reads."""

        def __class_getitem__(cls, item: type[T]) -> Any:
            return typing.Annotated[item, INPUT]

    class Output(Generic[T]):
        """``Output[Model]``: an artifact directory the component fills."""

        def __class_getitem__(cls, item: type[T]) -> Any:
            return typing.Annotated[item, OUTPUT]


def artifact_annotation(annotation: Any) -> tuple[_Direction, type[Artifact]] | None:
    """Return (direction, artifact class) for ``Input[X]`` / ``Output[X]``, else None."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        for extra in extras:
            if isinstance(extra, _Direction) and isinstance(base, type) and issubclass(base, Artifact):
                return extra, base
    return None


def param_type_name(annotation: Any) -> str | None:
    """Map a Python annotation onto a parameter type name, or None if it is not one."""
    origin = typing.get_origin(annotation) or annotation
    for name, kind in PARAM_TYPES.items():
        if origin is (kind.annotation or kind.python):
            return name
    return None


def check_value(type_name: str, value: Any) -> bool:
    """True when ``value`` is a valid literal for a parameter of ``type_name``."""
    return PARAM_TYPES[type_name].check(value)


def parse_value(type_name: str, text: str) -> Any:
    """Parse a command-line string into a value of ``type_name``; ValueError when it cannot."""
    return PARAM_TYPES[type_name].parse(text)


def coerce(type_name: str, value: Any) -> Any:
    """``value`` in the Python type of ``type_name`` (see ``ParamType.coerce``)."""
    return PARAM_TYPES[type_name].coerce(value)


def compatible(value_type: str, input_type: str) -> bool:
    """Whether a value of ``value_type`` may feed an input of ``input_type``."""
    return value_type == input_type or (value_type, input_type) == ("int", "float")
