"""Control flow scopes: ``Condition`` (run only if a comparison holds) and ``ParallelFor``.

Both are ``with`` blocks; every task created inside one belongs to it.
"""

from __future__ import annotations

from typing import Any

from kubesage.dsl.channel import Channel, Comparison, LoopItem
from kubesage.dsl.errors import DefinitionError


class Group:
    """A scope of tasks: a condition or a fan-out loop."""

    kind: str = ""
    id: str = ""

    def channels(self) -> list[Channel]:
        return []

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __enter__(self) -> Any:
        from kubesage.dsl.pipeline import require_builder

        require_builder(type(self).__name__).enter_group(self)
        return self

    def __exit__(self, *exc: object) -> None:
        from kubesage.dsl.pipeline import require_builder

        require_builder(type(self).__name__).exit_group(self)


class Condition(Group):
    """Run the tasks inside only when ``comparison`` holds at run time.

    ``with Condition(evaluate_task.outputs["accuracy"] >= threshold): register(...)``
    """

    kind = "condition"

    def __init__(self, comparison: Comparison, name: str | None = None) -> None:
        if not isinstance(comparison, Comparison):
            raise DefinitionError(
                f"Condition takes a comparison of run-time values such as "
                f"task.outputs['accuracy'] >= threshold, not {comparison!r}"
            )
        self.comparison = comparison
        self.name = name

    def channels(self) -> list[Channel]:
        return self.comparison.channels()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "condition": self.comparison.to_dict()}


class ParallelFor(Group):
    """Run the tasks inside once per item of ``items`` (a list or a list pipeline parameter).

    ``with ParallelFor(clients) as client: train(client=client, ...)``
    """

    kind = "loop"

    def __init__(self, items: list[Any] | Channel, parallelism: int = 0) -> None:
        if isinstance(items, Channel):
            if items.is_artifact or items.type != "list":
                raise DefinitionError(
                    f"ParallelFor needs a list; {items.describe()} is a {items.type}"
                )
        elif not isinstance(items, list):
            raise DefinitionError(f"ParallelFor needs a list, got {type(items).__name__}")
        self.items = items
        self.parallelism = parallelism

    def channels(self) -> list[Channel]:
        return [self.items] if isinstance(self.items, Channel) else []

    def __enter__(self) -> LoopItem:  # type: ignore[override]
        super().__enter__()
        item_type = "str"
        if isinstance(self.items, list) and self.items:
            first = self.items[0]
            item_type = {int: "int", float: "float", bool: "bool", dict: "dict"}.get(
                type(first), "str"
            )
        return LoopItem(self.id, item_type)

    def to_dict(self) -> dict[str, Any]:
        items = self.items.to_dict() if isinstance(self.items, Channel) else {"value": self.items}
        return {"id": self.id, "kind": self.kind, "items": items, "parallelism": self.parallelism}
