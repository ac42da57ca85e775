"""Placeholders for values that exist only when a pipeline runs.

A pipeline function never sees real values: its parameters, its tasks' outputs and its loop
items are channels. Comparing a parameter channel with a value or another channel gives a
``Comparison``, which ``Condition`` turns into a branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubesage.dsl.errors import ChannelUseError

if TYPE_CHECKING:
    from kubesage.dsl.task import Task

OPERATORS = ("==", "!=", "<", "<=", ">", ">=")


class Channel:
    """A value known at run time: ``type`` is a parameter type name or an artifact type name."""

    type: str
    is_artifact: bool = False

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _compare(self, op: str, other: Any) -> Comparison:
        if self.is_artifact:
            raise ChannelUseError(
                f"{self.describe()} is a {self.type} artifact and cannot be compared; return the "
                "value from the component (e.g. '-> float') and compare that output"
            )
        return Comparison(self, op, other)

    def __eq__(self, other: Any) -> Comparison:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: Any) -> Comparison:  # type: ignore[override]
        return self._compare("!=", other)

    def __lt__(self, other: Any) -> Comparison:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Comparison:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> Comparison:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Comparison:
        return self._compare(">=", other)

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise ChannelUseError(
            f"{self.describe()} has no value while the pipeline is defined; use "
            "'with Condition(...)' to branch on it at run time"
        )


class PipelineParam(Channel):
    """A pipeline parameter, e.g. ``threshold``."""

    def __init__(self, name: str, type_name: str) -> None:
        self.name = name
        self.type = type_name

    def describe(self) -> str:
        return f"pipeline parameter '{self.name}'"

    def to_dict(self) -> dict[str, Any]:
        return {"param": self.name}


class PipelineArtifact(Channel):
    """An artifact given to the pipeline from outside, e.g. a folder or another run's output
    (``kubesage run FILE.py:component --input data=...`` runs one component this way)."""

    is_artifact = True

    def __init__(self, name: str, type_name: str) -> None:
        self.name = name
        self.type = type_name

    def describe(self) -> str:
        return f"pipeline input artifact '{self.name}'"

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.name}


class TaskOutput(Channel):
    """An output (artifact or parameter) of a task."""

    def __init__(self, task: Task, output: str, type_name: str, is_artifact: bool) -> None:
        self.task = task
        self.output = output
        self.type = type_name
        self.is_artifact = is_artifact

    def describe(self) -> str:
        return f"output '{self.output}' of task '{self.task.name}'"

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task.name, "output": self.output}


class LoopItem(Channel):
    """The current item of a ``ParallelFor`` (or one field of it, ``item.client``)."""

    def __init__(self, loop_id: str, type_name: str = "str", field: str | None = None) -> None:
        self.loop_id = loop_id
        self.type = type_name
        self.field = field

    def __getattr__(self, name: str) -> LoopItem:
        if name.startswith("_"):
            raise AttributeError(name)
        return LoopItem(self.loop_id, "str", name)

    def __getitem__(self, name: str) -> LoopItem:
        return LoopItem(self.loop_id, "str", name)

    def describe(self) -> str:
        suffix = f".{self.field}" if self.field else ""
        return f"loop item of '{self.loop_id}'{suffix}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loop": self.loop_id}
        if self.field:
            out["field"] = self.field
        return out


@dataclass(frozen=True)
class Comparison:
    """``left <op> right``, evaluated when the pipeline runs."""

    left: Channel
    op: str
    right: Any

    def channels(self) -> list[Channel]:
        return [c for c in (self.left, self.right) if isinstance(c, Channel)]

    def to_dict(self) -> dict[str, Any]:
        right = self.right.to_dict() if isinstance(self.right, Channel) else {"value": self.right}
        return {"left": self.left.to_dict(), "op": self.op, "right": right}

    def __bool__(self) -> bool:
        raise ChannelUseError(
            "a comparison of run-time values has no truth value while the pipeline is defined; "
            "use 'with Condition(a >= b):'"
        )


def evaluate(op: str, left: Any, right: Any) -> bool:
    """Apply a comparison operator to two run-time values."""
    return {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }[op](left, right)
